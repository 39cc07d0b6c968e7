/**
 * Start-up and wiring (STYLE.md §10): builds each bank's pipeline and downstream pool from
 * a loaded config, starts one listener per port, and on reload swaps banks between
 * transactions (restarting only listeners whose socket or EHLO settings changed). Start and
 * reload first run config/preflight.ts (spool folder, forward loops), logging its warnings.
 * Signals are wired by the `start` command, not here, so tests run several instances in one process.
 */
import type { Bank } from './config/bank-schema';
import type { ListenerConfig } from './config/main-schema';
import type { LoadedConfig } from './config/load';
import { preflight } from './config/preflight';
import { startListener, type Listener } from './listener/listener';
import type { SessionContext } from './listener/session';
import { PostsealError } from './errors';
import { createAuthDeps } from './lib/authentication-results';
import type { Logger } from './lib/log';
import { createPipeline } from './pipeline/runner';
import { DownstreamPool } from './reinject/pool';
import { stageFactories } from './stages';
import { sweepStaleSpools } from './transaction/spool';

export interface Postseal {
  readonly listeners: readonly Listener[];
  /** Port of the listener for a bank (first match), for tests and tools. */
  portOf(bank: string): number;
  /** Applies a newly loaded config; throws (keeping the running one) if it cannot start. */
  reload(config: LoadedConfig): Promise<void>;
  /** Drains: stops accepting, finishes mail in flight within shutdownGraceMs, closes pools. */
  close(): Promise<void>;
}

interface Running {
  config: LoadedConfig;
  contexts: Map<string, SessionContext>;
  listeners: Listener[];
}

export interface StartOptions {
  /** Log the configuration's warnings (a cluster's primary logs them once, for all its workers). */
  logWarnings?: boolean;
}

export async function startPostseal(config: LoadedConfig, log: Logger, opts: StartOptions = {}): Promise<Postseal> {
  await checkConfig(config, log, opts.logWarnings ?? true);
  const stale = await sweepStaleSpools(config.main.spool.dir);
  if (stale.length) log.warn({ files: stale }, 'removed spool files of postseal processes that died');
  const running: Running = { config, contexts: buildContexts(config, log), listeners: [] };
  try {
    for (const l of config.main.listeners) running.listeners.push(await startListener(l, () => running.contexts.get(l.bank)!));
  } catch (err) {
    await Promise.all(running.listeners.map((l) => l.close()));
    await closePools(running.contexts);
    throw err;
  }
  return {
    get listeners() {
      return running.listeners;
    },
    portOf(bank) {
      const l = running.listeners.find((x) => x.config.bank === bank);
      if (!l) throw new Error(`no listener for bank ${bank}`);
      return l.port;
    },
    async reload(next) {
      await checkConfig(next, log, opts.logWarnings ?? true);
      const contexts = buildContexts(next, log);
      const oldContexts = running.contexts;
      const keep = new Map<string, Listener>();
      for (const l of running.listeners) keep.set(listenerKey(l.config, oldContexts.get(l.config.bank)!.bank), l);
      const wanted = next.main.listeners.map((l) => ({ l, key: listenerKey(l, contexts.get(l.bank)!.bank) }));
      const stays = new Set(wanted.map((w) => w.key));
      // A changed listener gives up its port before its successor binds it.
      await Promise.all([...keep].filter(([key]) => !stays.has(key)).map(([, l]) => l.close()));
      running.contexts = contexts;
      running.config = next;
      const listeners: Listener[] = [];
      for (const { l, key } of wanted) listeners.push(keep.get(key) ?? (await startListener(l, () => running.contexts.get(l.bank)!)));
      running.listeners = listeners;
      // Transactions that began before the reload finish on the old pools' connections.
      setTimeout(() => void closePools(oldContexts), 1000).unref();
      log.info({ file: next.file }, 'configuration reloaded');
    },
    async close() {
      await Promise.all(running.listeners.map((l) => l.close()));
      await closePools(running.contexts);
    },
  };
}

/** Spool folder and forward loops (config/preflight.ts); throws, refusing the start or the reload. */
async function checkConfig(config: LoadedConfig, log: Logger, logWarnings: boolean): Promise<void> {
  const warnings = await preflight(config);
  if (logWarnings) for (const w of warnings) log.warn({ code: w.code, config: config.file }, w.message);
}

function buildContexts(config: LoadedConfig, log: Logger): Map<string, SessionContext> {
  const contexts = new Map<string, SessionContext>();
  const spool = { dir: config.main.spool.dir, memoryThresholdBytes: config.main.spool.memoryThresholdBytes, headBytes: config.main.spool.maxHeaderBytes };
  // One resolver (and its cache) for every bank of this configuration.
  const auth = createAuthDeps(config.main.dns);
  checkSignerBanks(config);
  for (const [name, bank] of config.banks) {
    const bankLog = log.child({ bank: name });
    contexts.set(name, {
      bank,
      hostname: config.hostname,
      log: bankLog,
      trustedNetworks: config.trustedNetworks,
      pool: new DownstreamPool(bank.forward, bank.forward.heloName || config.hostname, bankLog),
      pipeline: createPipeline(
        bank,
        { hostname: config.hostname, authservId: config.authservId, bankName: name, log: bankLog, spool, keys: config.keys, auth },
        stageFactories,
        (other) => contexts.get(other)?.pipeline,
      ),
      spool,
      shutdownGraceMs: config.main.shutdownGraceMs,
    });
  }
  return contexts;
}

/** A signer-based bank that does not exist would be noticed only when such mail arrives. */
function checkSignerBanks(config: LoadedConfig): void {
  for (const [name, bank] of config.banks) {
    for (const m of bank.dkimVerify.signerBanks) {
      if (!config.banks.has(m.bank))
        throw new PostsealError('CFG_BANK_MISSING', `bank "${name}": /dkimVerify/signerBanks: bank "${m.bank}" (for signer ${m.signer}) has no file; create ${m.bank}.yaml`);
    }
  }
}

/** What a running listener was started with; equal keys mean the listener can stay. */
function listenerKey(l: ListenerConfig, bank: Bank): string {
  const { greetingBanner, discardEhloKeywords, maxMessageSizeBytes, timeouts } = bank;
  return JSON.stringify([l, greetingBanner, discardEhloKeywords, maxMessageSizeBytes, timeouts.socketIdleTimeoutMs]);
}

async function closePools(contexts: Map<string, SessionContext>): Promise<void> {
  await Promise.all([...contexts.values()].map((c) => c.pool.close()));
}
