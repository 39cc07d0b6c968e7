/**
 * The listeners as one Service (services/service.ts): one listener per configured port,
 * each bound to its policy bank's context: SMTP/LMTP (listener.ts) or milter (milter/). A reload swaps the banks' contexts between
 * transactions and restarts only the listeners whose socket or EHLO settings changed; a
 * transaction that began before it finishes on the old context's downstream connections.
 */
import type { CommonBank } from '../config/bank-schema';
import type { ListenerConfig } from '../config/main-schema';
import type { Logger } from '../lib/log';
import type { Service } from '../services/service';
import type { LoadedConfig } from '../setup';
import { startListener, type Listener } from './listener';
import { startMilterListener } from './milter/listener';
import type { SessionContext } from './session';

export interface SmtpService extends Service {
  readonly listeners: readonly Listener[];
  /** Port of the listener for a bank (first match), for tests and tools. */
  portOf(bank: string): number;
}

/** How the contexts of a configuration are made and let go (main.ts wires the pipelines and pools). */
export interface Contexts {
  build(config: LoadedConfig): Map<string, SessionContext>;
  close(contexts: Map<string, SessionContext>): Promise<void>;
}

export function createSmtpService(first: LoadedConfig, contexts: Contexts, log: Logger): SmtpService {
  let current = contexts.build(first);
  let config = first;
  let listeners: Listener[] = [];
  const contextOf = (l: ListenerConfig) => () => current.get(l.bank)!;
  const start = (l: ListenerConfig) => (l.protocol === 'milter' ? startMilterListener(l, contextOf(l)) : startListener(l, contextOf(l)));
  return {
    name: 'smtp',
    get listeners() {
      return listeners;
    },
    portOf(bank) {
      const l = listeners.find((x) => x.config.bank === bank);
      if (!l) throw new Error(`no listener for bank ${bank}`);
      return l.port;
    },
    async start() {
      try {
        for (const l of config.main.listeners) listeners.push(await start(l));
      } catch (err) {
        await Promise.all(listeners.map((l) => l.close()));
        listeners = [];
        await contexts.close(current);
        throw err;
      }
    },
    async reload(next) {
      const fresh = contexts.build(next);
      const old = current;
      const keep = new Map<string, Listener>();
      for (const l of listeners) keep.set(listenerKey(l.config, old.get(l.config.bank)!.bank), l);
      const wanted = next.main.listeners.map((l) => ({ l, key: listenerKey(l, fresh.get(l.bank)!.bank) }));
      const stays = new Set(wanted.map((w) => w.key));
      // A changed listener gives up its port before its successor binds it.
      await Promise.all([...keep].filter(([key]) => !stays.has(key)).map(([, l]) => l.close()));
      current = fresh;
      config = next;
      const started: Listener[] = [];
      for (const { l, key } of wanted) started.push(keep.get(key) ?? (await start(l)));
      listeners = started;
      // Transactions that began before the reload finish on the old pools' connections.
      setTimeout(() => void contexts.close(old).catch((err) => log.warn({ err }, 'closing the old downstream connections failed')), 1000).unref();
    },
    async close() {
      await Promise.all(listeners.map((l) => l.close()));
      await contexts.close(current);
    },
  };
}

/** What a running listener was started with; equal keys mean the listener can stay. */
function listenerKey(l: ListenerConfig, bank: CommonBank): string {
  const { greetingBanner, discardEhloKeywords, maxMessageSizeBytes, timeouts } = bank;
  return JSON.stringify([l, greetingBanner, discardEhloKeywords, maxMessageSizeBytes, timeouts.socketIdleTimeoutMs]);
}
