/**
 * Several postseal processes behind the same listeners (docs/architecture.md "Lifecycle", Node's cluster module):
 * the message path is stateless, so each worker runs the whole filter and the kernel-side
 * listening sockets are shared. The primary only supervises:
 *
 * - start-up: forks `workers` processes; it reports "postseal started" once every worker has
 *   its listeners up, and exits 1 (stopping the others) if one fails before that;
 * - SIGTERM/SIGINT: passed on, each worker drains as a single process would; the primary
 *   exits 0 when all have exited 0;
 * - SIGHUP: passed on, each worker reloads (and refuses an invalid file) on its own;
 * - a worker that ends after start-up is replaced after RESTART_DELAY_MS, so a crash costs
 *   one worker's connections (Postfix retries them), not the service;
 * - the milter listeners' sockets (shared-sockets.ts): bound here when a worker first asks,
 *   kept across worker restarts, let go on SIGTERM, and a full worker's surplus connections
 *   passed on to one with room (handoff.ts). SMTP listeners use Node's round robin.
 */
import { releaseIdleMemory } from './idle-memory';
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from '../lib/log';
import type { SharedSockets } from './shared-sockets';

/** What a worker sends the primary once its listeners accept connections. */
export const WORKER_READY = 'postseal:worker-ready';

const RESTART_DELAY_MS = 1000;

/**
 * V8's young generation of each worker, `workerSemiSpaceMb` (main config, default 8): Node's
 * own default lets it grow to 32 MB semi-spaces on a machine with this much memory. Measured
 * with 2 workers under smtp-source load (bench/README.md, "Several cores" and "Tail
 * latency"). An operator's own semi-space setting, on node's command line or in NODE_OPTIONS,
 * wins.
 */
export function workerV8Flags(semiSpaceMb: number): string[] {
  return [`--max-semi-space-size=${semiSpaceMb}`];
}

function workerExecArgv(semiSpaceMb: number): string[] {
  const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
  const ownSetting = given.some((a) => /^--(max|min)[-_]semi[-_]space[-_]size/.test(a));
  return ownSetting ? process.execArgv : [...process.execArgv, ...workerV8Flags(semiSpaceMb)];
}

/** Hooks for side services (services/metrics/index.ts): the primary's view of its workers. */
export interface PrimaryHooks {
  /** How many workers have their listeners up, on every change. */
  readyWorkers?(count: number): void;
  /** SIGTERM/SIGINT received: the workers are draining. */
  draining?(): void;
}

export function runPrimary(workers: number, log: Logger, hooks: PrimaryHooks = {}, semiSpaceMb = 8, sockets?: SharedSockets): Promise<number> {
  return new Promise((resolve) => {
    let stopping = false;
    let started = false;
    let failed = false;
    let hups = 0;
    // Our own table: cluster.workers may still list a worker whose 'exit' already fired.
    const live = new Map<number, { worker: Worker; ready: boolean; hupsAtFork: number }>();
    const restarts = new Set<NodeJS.Timeout>();
    const reportReady = () => hooks.readyWorkers?.([...live.values()].filter((e) => e.ready).length);

    const fork = () => {
      const worker = cluster.fork();
      const entry = { worker, ready: false, hupsAtFork: hups };
      live.set(worker.id, entry);
      worker.on('message', (msg: unknown, handle: unknown) => {
        if (sockets?.onMessage(worker, msg, handle) || msg !== WORKER_READY) return;
        entry.ready = true;
        reportReady();
        if ([...live.values()].every((e) => e.ready)) sockets?.workersReady();
        // A worker reads the file when it starts; a SIGHUP since then is its to apply now.
        if (hups > entry.hupsAtFork) worker.process.kill('SIGHUP');
        if (!started && [...live.values()].filter((e) => e.ready).length === workers) {
          started = true;
          // The primary's own start-up garbage (configuration, schemas), given back once it is all up.
          releaseIdleMemory(log);
          log.info({ workers, pid: process.pid }, 'postseal started');
        }
      });
      worker.on('exit', (code, signal) => onExit(worker, code, signal));
    };

    const onExit = (worker: Worker, code: number | null, signal: string | null) => {
      live.delete(worker.id);
      sockets?.workerExited(worker.id);
      reportReady();
      if (stopping) {
        if (code !== 0 && signal !== 'SIGTERM') failed = true;
        if (live.size === 0) resolve(failed ? 1 : 0);
        return;
      }
      if (!started) {
        failed = true;
        log.error({ worker: worker.id, code, signal }, 'worker failed to start, stopping');
        return stop('worker start-up failure');
      }
      log.error({ worker: worker.id, code, signal }, 'worker ended, replacing it');
      // Kept referenced: with every worker gone at once (the OOM killer) nothing else keeps this
      // process alive, and it would exit 0 instead of replacing them.
      const timer = setTimeout(() => {
        restarts.delete(timer);
        if (!stopping) fork();
      }, RESTART_DELAY_MS);
      restarts.add(timer);
    };

    const stop = (reason: string) => {
      if (stopping) return;
      stopping = true;
      for (const t of restarts) clearTimeout(t);
      hooks.draining?.();
      sockets?.closeAll();
      log.info({ signal: reason }, 'draining');
      if (live.size === 0) return resolve(failed ? 1 : 0);
      for (const { worker } of live.values()) worker.process.kill('SIGTERM');
    };

    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => {
      hups++;
      // A worker without its handlers yet would die of the signal; it gets it once ready.
      for (const { worker, ready } of live.values()) if (ready) worker.process.kill('SIGHUP');
    });
    cluster.setupPrimary({ execArgv: workerExecArgv(semiSpaceMb) });
    for (let i = 0; i < workers; i++) fork();
  });
}
