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

/** The V8 heap sizes the primary gives its workers (main config workerSemiSpaceMb, workerInitialOldSpaceMb). */
export interface WorkerHeap {
  readonly semiSpaceMb: number;
  /** 0: node's own. */
  readonly initialOldSpaceMb: number;
}

/**
 * The old generation of each worker starts at `workerInitialOldSpaceMb` (default 128) instead
 * of V8's small initial size, with which a worker under load ran mark-compact collections
 * early and often: in two alternated pairs of the proxy bench (originating path, 30 s at full
 * load, then three 18 s rounds at half load) the added p99 went from 38.1 and 38.4 ms to 21.3
 * and 23.5, the event-loop delay's p99 from 9–11 to 4–5 ms, for about 60 MB more peak RSS over
 * the three processes (bench/README.md "Tail latency"). node does not take the flag from
 * NODE_OPTIONS, so otherwise only node's own command line sets it. An operator's
 * --max-old-space-size (command line or NODE_OPTIONS) caps it: V8 silently raises the maximum to
 * an initial size above it (node --max-old-space-size=64 --initial-old-space-size=128 gets a
 * 256 MB heap limit instead of 88).
 */
function workerExecArgv(heap: WorkerHeap): string[] {
  const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
  const own = (flag: RegExp) => given.some((a) => flag.test(a));
  const argv = [...process.execArgv];
  if (!own(/^--(max|min)[-_]semi[-_]space[-_]size/)) argv.push(...workerV8Flags(heap.semiSpaceMb));
  const maxOld = given.map((a) => /^--max[-_]old[-_]space[-_]size=(\d+)$/.exec(a)?.[1]).filter((v) => v !== undefined);
  const initial = Math.min(heap.initialOldSpaceMb, ...maxOld.map(Number));
  if (initial > 0 && !own(/^--initial[-_]old[-_]space[-_]size/)) argv.push(`--initial-old-space-size=${initial}`);
  return argv;
}

/** Hooks for side services (services/metrics/index.ts): the primary's view of its workers. */
export interface PrimaryHooks {
  /** How many workers have their listeners up, on every change. */
  readyWorkers?(count: number): void;
  /** SIGTERM/SIGINT received: the workers are draining. */
  draining?(): void;
}

export function runPrimary(
  workers: number,
  log: Logger,
  hooks: PrimaryHooks = {},
  heap: WorkerHeap = { semiSpaceMb: 8, initialOldSpaceMb: 128 },
  sockets?: SharedSockets,
): Promise<number> {
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
    cluster.setupPrimary({ execArgv: workerExecArgv(heap) });
    for (let i = 0; i < workers; i++) fork();
  });
}
