/**
 * `postseal start`: runs the filter in the foreground. SIGTERM/SIGINT drain and exit 0;
 * SIGHUP reloads the config, keeping the running one if the new one is invalid.
 */
import { createLogger } from '../lib/log';
import { startPostseal } from '../main';
import { loadOrExplain, parse, withUsage } from './args';

const help = `Usage: postseal start [--config FILE]

Runs postseal in the foreground, logging JSON lines to standard output.
  --config FILE   main configuration (YAML); default: the embedded postseal.yaml
Signals: SIGTERM/SIGINT finish mail in flight and exit; SIGHUP reloads the configuration.`;

export function runStart(args: string[]): Promise<number> {
  return withUsage(async () => {
    const { values, help: h } = parse(args, { config: { type: 'string', short: 'c' } }, help);
    if (h) return print(h);
    const config = loadOrExplain(values.config);
    if (!config) return 1;
    const log = createLogger(config.main.log.level);
    const app = await startPostseal(config, log);
    log.info({ config: config.file, listeners: app.listeners.map((l) => `${l.config.address}:${l.port}=${l.config.bank}`) }, 'postseal started');
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'draining');
      app.close().then(
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
      const next = loadOrExplain(values.config);
      if (!next) return log.error({ config: config.file }, 'reload refused: new configuration invalid, keeping the running one');
      app.reload(next).catch((err) => log.error({ err }, 'reload failed, keeping the running configuration'));
    });
    return new Promise<number>(() => undefined);
  });
}

function print(text: string): number {
  process.stdout.write(`${text}\n`);
  return 0;
}
