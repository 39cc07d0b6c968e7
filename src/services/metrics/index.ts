/**
 * The metrics service's entry points for `postseal start` (cli/start-command.ts):
 * - a single process: its own registry, served by its own MetricsService;
 * - a cluster worker: its own registry, answering the primary (cluster.ts), no HTTP;
 * - a cluster's primary: the MetricsService, serving the workers' metrics summed, ready
 *   when every worker has its listeners up.
 * Nothing is made when services.metrics.enabled is false (the message path keeps lib/telemetry.ts's no-op).
 */
import type { LoadedConfig } from '../../setup';
import type { Logger } from '../../lib/log';
import type { Telemetry } from '../../lib/telemetry';
import { answerMetricsRequests, createClusterSource } from './cluster';
import { createProcessMetrics } from './registry';
import { MetricsService } from './service';

export { MetricsService } from './service';
export { createProcessMetrics } from './registry';

export interface ProcessSide {
  readonly telemetry: Telemetry;
  /** The HTTP service for a single process (to start once the listeners are up); undefined in a worker. */
  readonly service: MetricsService | undefined;
  /** Marks the listeners as serving (true) or not (false: starting, draining). */
  listenersUp(up: boolean): void;
}

export function metricsForProcess(config: LoadedConfig, log: Logger, isWorker: boolean): ProcessSide | undefined {
  if (!config.main.services.metrics.enabled) return undefined;
  const { registry, telemetry } = createProcessMetrics();
  let down: string | null = 'the SMTP listeners are not started yet';
  if (isWorker) answerMetricsRequests(registry);
  const service = isWorker
    ? undefined
    : new MetricsService(config, {
        log,
        source: { contentType: registry.contentType, metrics: () => registry.metrics() },
        listenersDown: () => down,
      });
  return {
    telemetry,
    service,
    listenersUp(up) {
      down = up ? null : 'the SMTP listeners are draining';
    },
  };
}

export interface PrimarySide {
  readonly service: MetricsService;
  /** Called by the primary with how many workers have their listeners up. */
  readyWorkers(count: number): void;
  /** Draining: /readyz answers 503 from now on. */
  draining(): void;
}

export function metricsForPrimary(config: LoadedConfig, log: Logger, workers: number): PrimarySide | undefined {
  if (!config.main.services.metrics.enabled) return undefined;
  let ready = 0;
  let draining = false;
  const service = new MetricsService(config, {
    log,
    source: createClusterSource(),
    listenersDown: () => (draining ? 'the SMTP listeners are draining' : ready < workers ? `${ready} of ${workers} workers have their SMTP listeners up` : null),
  });
  return {
    service,
    readyWorkers(count) {
      ready = count;
    },
    draining() {
      draining = true;
    },
  };
}
