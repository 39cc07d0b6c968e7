/**
 * `postseal start`: runs the filter in the foreground. SIGTERM/SIGINT drain and exit 0;
 * SIGHUP reloads the config, keeping the running one if the new one is invalid. A config that
 * loads but cannot run (spool folder unusable, a forward loop: config/preflight.ts) stops
 * start-up with exit 1, or is refused on reload.
 * With more than one worker (config `workers`, --workers) this process supervises a Node
 * cluster (src/cluster/primary.ts) and each worker runs this same command as one process.
 */
import cluster from 'node:cluster';
import { readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { WORKER_READY, runPrimary } from '../cluster/primary';
import { SharedSockets, socketsFromPrimary, socketsSupported } from '../cluster/shared-sockets';
import { ownSockets } from '../listener/listen-sockets';
import { removeStaleSocket } from '../services/policy/stale-socket';
import { isProcessAlive } from '../transaction/process-alive';
import { checkConfig } from '../setup';
import { isPostsealError } from '../errors';
import { loadConfig, type LoadedConfig } from '../setup';
import { createLogger } from '../lib/log';
import type { Postseal } from '../main';
import type * as MetricsModule from '../services/metrics';
import { UsageError, chooseConfigFile, configErrorFields, loadOrExplain, parse, withUsage } from './args';

const help = `Usage: postseal start [--config FILE] [--workers N] [--pid-file FILE]

Runs postseal in the foreground, logging JSON lines to standard output.
  --config FILE   main configuration (YAML); default: $POSTSEAL_CONFIG, else
                  /etc/postseal/postseal.yaml, else the embedded example (with a notice)
  --workers N     processes serving the listeners; 0 = one per CPU core (default: config
                  key workers, itself 0 by default); 1 = this process alone
  --pid-file FILE this process's pid, written once the configuration is valid, removed at
                  exit (systemd needs none: the unit starts this process itself)
Signals: SIGTERM/SIGINT finish mail in flight and exit; SIGHUP reloads the configuration.`;

export function runStart(args: string[]): Promise<number> {
  return withUsage(async () => {
    const { values, help: h } = parse(args, { config: { type: 'string', short: 'c' }, workers: { type: 'string' }, 'pid-file': { type: 'string' } }, help);
    if (h) return print(h);
    // Chosen once: a reload reads the same file, even if /etc/postseal/postseal.yaml appears meanwhile.
    const file = chooseConfigFile(values.config);
    const config = loadOrExplain(file);
    if (!config) return 1;
    const workers = workerCount(values.workers, config.main.workers);
    const base = createLogger(config.main.log.level);
    if (cluster.isPrimary && values['pid-file'] && !writePidFile(values['pid-file'])) return 1;
    if (cluster.isPrimary && workers > 1) {
      // Checked once here, so a bad spool folder or a loop is one clear error, not one per worker.
      try {
        for (const w of await checkConfig(config)) base.warn({ code: w.code, config: config.file }, w.message);
        // The primary binds a unix socket path for its workers: one a dead postseal left goes first.
        const policySocket = config.main.services.policy.enabled ? config.main.services.policy.socket : '';
        if (policySocket && (await removeStaleSocket(policySocket))) base.warn({ socket: policySocket }, 'removed the policy socket a stopped postseal left behind');
      } catch (err) {
        return explainStartFailure(err);
      }
      const metrics = metricsModule(config)?.metricsForPrimary(config, base, workers);
      try {
        await metrics?.service.start();
      } catch (err) {
        return explainStartFailure(err);
      }
      if (metrics) watchPrimaryReload(metrics.service, file, base);
      // The milter listeners' sockets: bound here once, accepted on by the workers (cluster/shared-sockets.ts).
      const sockets = socketsSupported ? new SharedSockets(base) : undefined;
      const heap = { semiSpaceMb: config.main.workerSemiSpaceMb, initialOldSpaceMb: config.main.workerInitialOldSpaceMb };
      const code = await runPrimary(workers, base, metrics ?? {}, heap, sockets);
      await metrics?.service.close();
      return code;
    }
    const log = cluster.isWorker ? base.child({ worker: cluster.worker!.id }) : base;
    // Loaded here, not by the primary (see cli/main.ts). A worker that cannot load or start it
    // drops the channel to the primary, which would keep it alive, and so exits 1.
    let app: Postseal;
    const metrics = metricsModule(config)?.metricsForProcess(config, log, cluster.isWorker);
    try {
      // Without the primary's sockets a worker's listeners still share Node's round robin with the other workers.
      const sockets = !cluster.isWorker ? undefined : socketsSupported ? socketsFromPrimary(log, workers) : { ...ownSockets, shared: true };
      app = await (require('../main') as typeof import('../main')).startPostseal(config, log, { logWarnings: !cluster.isWorker, telemetry: metrics?.telemetry, sockets });
    } catch (err) {
      cluster.worker?.disconnect();
      return explainStartFailure(err);
    }
    // After the listeners, so /readyz never says ready before they are bound.
    try {
      await metrics?.service?.start();
    } catch (err) {
      await app.close();
      return explainStartFailure(err);
    }
    metrics?.listenersUp(true);
    const listeners = app.listeners.map((l) => `${l.config.address}:${l.port}=${l.config.bank}`);
    if (cluster.isWorker) {
      log.info({ config: config.file, listeners, pid: process.pid }, 'worker started');
      process.send!(WORKER_READY);
    } else {
      log.info({ config: config.file, listeners, pid: process.pid }, 'postseal started');
    }
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'draining');
      metrics?.listenersUp(false);
      // The metrics service stays up while mail drains, so a last scrape sees the final counts.
      app
        .close()
        .then(async () => await metrics?.service?.close())
        .then(
          () => {
            log.info('stopped');
            log.flush();
            process.exit(0);
          },
          (err) => {
            log.error({ err }, 'shutdown failed');
            process.exit(1);
          },
        );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => {
      let next: LoadedConfig;
      try {
        next = loadConfig(file);
      } catch (err) {
        // One JSON line that says why: code, file, pointer or line, the message (no stack: it is the file's fault).
        if (isPostsealError(err)) return log.error({ config: config.file, ...configErrorFields(err) }, 'reload refused: new configuration invalid, keeping the running one');
        return log.error({ config: config.file, err }, 'reload refused: new configuration unreadable, keeping the running one');
      }
      if (next.main.workers !== config.main.workers) log.warn({ workers: next.main.workers }, 'workers changes at the next start, not on reload');
      app
        .reload(next)
        .then(() => metrics?.service?.reload(next).catch((err) => log.error({ err, code: (err as { code?: unknown }).code }, 'metrics reload failed, keeping the running address')))
        .catch((err) =>
          isPostsealError(err)
            ? log.error({ config: config.file, ...configErrorFields(err) }, 'reload failed, keeping the running configuration')
            : log.error({ err }, 'reload failed, keeping the running configuration'),
        );
    });
    return new Promise<number>(() => undefined);
  });
}

/**
 * Loaded only when services.metrics.enabled: the metrics modules and prom-client add about
 * 3 MB of RSS to a process that has loaded main.js (measured: rss before and after the require).
 */
function metricsModule(config: LoadedConfig): typeof MetricsModule | undefined {
  return config.main.services.metrics.enabled ? (require('../services/metrics') as typeof MetricsModule) : undefined;
}

/** The primary reads the file again on SIGHUP for the metrics service's address and port (workers reload themselves). */
function watchPrimaryReload(service: { reload(c: LoadedConfig): Promise<void> }, file: string, log: ReturnType<typeof createLogger>): void {
  process.on('SIGHUP', () => {
    let next: LoadedConfig;
    try {
      next = loadConfig(file);
    } catch {
      return; // Each worker explains the invalid file and keeps its configuration.
    }
    service.reload(next).catch((err) => log.error({ err, code: (err as { code?: unknown }).code }, 'metrics reload failed, keeping the running address'));
  });
}

/**
 * Written whole (a temporary file renamed), so a reader never sees a partial pid; removed at
 * exit, however the process ends short of SIGKILL.
 */
function writePidFile(file: string): boolean {
  // A pid file naming a live process belongs to a running postseal: a second start must not take it.
  const holder = Number(
    (() => {
      try {
        return readFileSync(file, 'utf8').trim();
      } catch {
        return '';
      }
    })(),
  );
  if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && isProcessAlive(holder)) {
    process.stderr.write(`postseal: ${file} names pid ${holder}, a running process; stop it first, or give another --pid-file\n`);
    return false;
  }
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, `${process.pid}\n`, { mode: 0o644 });
    renameSync(tmp, file);
  } catch (err) {
    process.stderr.write(`postseal: cannot write the pid file ${file}: ${(err as Error).message}; check that its folder exists and postseal's user may write it\n`);
    return false;
  }
  process.on('exit', () => {
    try {
      // Only our own: another postseal may have written it since.
      if (readFileSync(file, 'utf8').trim() === String(process.pid)) unlinkSync(file);
    } catch {
      // Already gone: nothing to clean.
    }
  });
  return true;
}

/**
 * A configuration that loads but cannot run (spool folder, loop, a port another program holds)
 * is explained as load errors are: the code, then the message naming file, pointer and fix.
 */
function explainStartFailure(err: unknown): number {
  if (!isPostsealError(err)) throw err;
  process.stderr.write(`postseal: ${err.code.startsWith('CFG_') ? 'configuration error' : 'cannot start:'} ${err.code}\n${err.message}\n`);
  return 1;
}

/** --workers wins over the config key; 0 means one per core. */
function workerCount(flag: string | undefined, configured: number): number {
  const n = flag === undefined ? configured : Number(flag);
  if (!Number.isInteger(n) || n < 0 || n > 256) throw new UsageError(`--workers must be a whole number from 0 to 256, got ${flag}\n\n${help}`);
  return n === 0 ? os.availableParallelism() : n;
}

function print(text: string): number {
  process.stdout.write(`${text}\n`);
  return 0;
}
