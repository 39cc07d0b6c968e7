/**
 * The listeners as one Service (services/service.ts): one listener per configured port,
 * each bound to its policy bank's context: SMTP/LMTP (listener.ts) or milter (milter/). A reload swaps the banks' contexts between
 * transactions and restarts only the listeners whose socket or EHLO settings changed; a
 * transaction that began before it finishes on the old context's downstream connections.
 * A restarted listener whose socket a new one takes (same address and port) closes before its
 * successor listens; the others close once the new listeners are up, and a milter socket that
 * no listener takes any more is retired (listen-sockets.ts: in a cluster the primary closes it
 * once no worker listens on it). Moving a port from a milter to an SMTP listener in a cluster
 * needs a restart: the other workers still listen on the milter socket.
 */
import type { CommonBank } from '../config/bank-schema';
import type { ListenerConfig } from '../config/main-schema';
import type { Logger } from '../lib/log';
import type { Service } from '../services/service';
import { PostsealError } from '../errors';
import type { LoadedConfig } from '../setup';
import { ownSockets, sameSocket, type ListenSockets, type SocketAt } from './listen-sockets';
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

/** `sockets`: where milter listeners get their listening socket (a cluster's worker: from the primary). */
export function createSmtpService(first: LoadedConfig, contexts: Contexts, log: Logger, sockets: ListenSockets = ownSockets): SmtpService {
  let current = contexts.build(first);
  let config = first;
  let listeners: Listener[] = [];
  // `own`: the contexts it started with, for a listener that outlives a reload that dropped its bank (until it has closed).
  const contextOf = (l: ListenerConfig, own: Map<string, SessionContext>) => () => current.get(l.bank) ?? own.get(l.bank)!;
  const start = (l: ListenerConfig, slot: number) =>
    (l.protocol === 'milter' ? startMilterListener(l, contextOf(l, current), sockets, slot) : startListener(l, contextOf(l, current))).catch((err: unknown) => {
      throw explainListenFailure(err, config.file, slot);
    });
  // Where each running listener listens, with its slot (port-0 listeners are told apart by it).
  let places = new Map<Listener, SocketAt>();
  const at = (l: ListenerConfig, slot: number): SocketAt => ({ address: l.address, port: l.port, slot });
  // A refused reload: the running listeners that gave up their socket to a successor listen again.
  const restart = async (closed: Listener[]) => {
    for (const l of closed) {
      const place = places.get(l)!;
      try {
        const again = await start(l.config, place.slot);
        listeners[listeners.indexOf(l)] = again;
        places.delete(l);
        places.set(again, place);
      } catch (err) {
        listeners = listeners.filter((x) => x !== l);
        log.error({ err, address: place.address, port: place.port }, 'a listener could not listen again after a refused reload');
      }
    }
  };
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
        for (const [slot, l] of config.main.listeners.entries()) {
          const listener = await start(l, slot);
          listeners.push(listener);
          places.set(listener, at(l, slot));
        }
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
      const wanted = next.main.listeners.map((l, slot) => ({ l, slot, key: listenerKey(l, fresh.get(l.bank)!.bank) }));
      const stays = new Set(wanted.map((w) => w.key));
      const gone = [...keep].filter(([key]) => !stays.has(key)).map(([, l]) => l);
      // Any address on the port: 127.0.0.1 and 0.0.0.0 (or ::) cannot both be bound.
      const onPort = (w: { l: ListenerConfig; slot: number }, l: Listener) => (w.l.port !== 0 && w.l.port === places.get(l)!.port) || sameSocket(at(w.l, w.slot), places.get(l)!);
      const taken = (l: Listener) => wanted.some((w) => onPort(w, l));
      if (sockets.shared)
        refuseUnmovable(
          next.file,
          wanted.filter((w) => !keep.has(w.key)),
          gone,
          onPort,
          (l) => places.get(l)!,
        );
      // A changed listener gives up its port before its successor binds it; one that moves goes after the new ones listen.
      const yielded = gone.filter(taken);
      await Promise.all(yielded.map((l) => l.close()));
      const previous = config;
      current = fresh;
      config = next;
      const started: Listener[] = [];
      const nextPlaces = new Map<Listener, SocketAt>();
      try {
        for (const { l, slot, key } of wanted) {
          const listener = keep.get(key) ?? (await start(l, slot));
          started.push(listener);
          nextPlaces.set(listener, places.get(listener) ?? at(l, slot));
        }
      } catch (err) {
        // Refused whole: what this reload started closes (in a cluster its new milter sockets are
        // retired, not left listening in the primary), and the running listeners stay as they were.
        const added = started.filter((l) => !places.has(l));
        await Promise.all(added.map((l) => l.close()));
        for (const l of added) if (l.config.protocol === 'milter' && ![...places.values()].some((p) => sameSocket(p, nextPlaces.get(l)!))) sockets.retire(nextPlaces.get(l)!);
        current = old;
        config = previous;
        await restart(yielded);
        setTimeout(() => void contexts.close(fresh).catch((e) => log.warn({ err: e }, 'closing the refused downstream connections failed')), 1000).unref();
        throw err;
      }
      listeners = started;
      await Promise.all(gone.filter((l) => !taken(l)).map((l) => l.close()));
      for (const l of gone)
        if (l.config.protocol === 'milter' && !wanted.some((w) => w.l.protocol === 'milter' && sameSocket(at(w.l, w.slot), places.get(l)!))) sockets.retire(places.get(l)!);
      places = nextPlaces;
      // Transactions that began before the reload finish on the old pools' connections.
      setTimeout(() => void contexts.close(old).catch((err) => log.warn({ err }, 'closing the old downstream connections failed')), 1000).unref();
    },
    async close() {
      await Promise.all(listeners.map((l) => l.close()));
      await contexts.close(current);
    },
  };
}

/**
 * In a cluster the other workers still listen on a port while this one reloads (the primary
 * holds a milter socket, or Node's round robin the SMTP one), so a new listener on a port that
 * a gone one leaves can only take the same socket: same address, and milter for milter. Else
 * it would fail after this worker closed its old listener, and every worker would end up with
 * none while the primary's socket still queued Postfix's connections (milter) or refused them
 * (SMTP). Refused before anything closes; a restart moves it.
 */
function refuseUnmovable(
  file: string,
  added: { l: ListenerConfig; slot: number }[],
  gone: Listener[],
  onPort: (w: { l: ListenerConfig; slot: number }, l: Listener) => boolean,
  placeOf: (l: Listener) => SocketAt,
): void {
  const milter = (c: ListenerConfig) => c.protocol === 'milter';
  for (const w of added)
    for (const l of gone) {
      if (!onPort(w, l) || (placeOf(l).address === w.l.address && milter(l.config) === milter(w.l))) continue;
      throw new PostsealError(
        'CFG_INCONSISTENT',
        `${file}: /listeners/${w.slot}: port ${w.l.port} on ${w.l.address} (${w.l.protocol}) is the running ${l.config.protocol} listener's on ${placeOf(l).address}; with several workers that move needs a restart (postseal keeps the running listeners)`,
      );
    }
}

/** What a running listener was started with; equal keys mean the listener can stay. */
function listenerKey(l: ListenerConfig, bank: CommonBank): string {
  const { greetingBanner, discardEhloKeywords, maxMessageSizeBytes, timeouts } = bank;
  return JSON.stringify([l, greetingBanner, discardEhloKeywords, maxMessageSizeBytes, timeouts.socketIdleTimeoutMs]);
}

/**
 * LISTEN_FAILED with the file, the listener's JSON pointer and the fix for the usual cause:
 * on a migration, amavisd-new (10024/10026) or OpenDKIM/OpenDMARC (8891/8893) still holds the port.
 */
function explainListenFailure(err: unknown, file: string, slot: number): unknown {
  if (!(err instanceof PostsealError) || err.code !== 'LISTEN_FAILED') return err;
  const errno = (err.cause as NodeJS.ErrnoException | undefined)?.code;
  const fix =
    errno === 'EADDRINUSE'
      ? 'another program listens there (amavisd-new, OpenDKIM or OpenDMARC not stopped yet, or another postseal): ss -ltnp shows which; stop it, or give this listener another port'
      : errno === 'EACCES'
        ? 'ports below 1024 need root: use the 100xx ports Postfix sends to (docs/ports.md)'
        : errno === 'EADDRNOTAVAIL' || errno === 'ENOTFOUND' || errno === 'EAI_AGAIN'
          ? 'that address is not on this host (ip -br addr lists them): use 127.0.0.1 or one of its addresses'
          : 'check the address and port';
  return new PostsealError('LISTEN_FAILED', `${file}: /listeners/${slot}: ${err.message}; ${fix}`, { cause: err.cause });
}
