/**
 * One lifecycle for everything postseal runs (docs/architecture.md, "Lifecycle"): the SMTP
 * listeners and each side service (metrics, policy, SRS, DMARC reports) are Services that
 * main.ts starts in order, reloads on SIGHUP and drains on SIGTERM, in reverse order.
 *
 * A service gets its dependencies when it is made (the store, the logger, the metrics
 * registry), never from a module singleton, so tests run several instances in one process.
 */
import type { LoadedConfig } from '../setup';

export interface Service {
  /** For log lines: "smtp", "metrics", ... */
  readonly name: string;
  /** Binds its sockets and starts its timers; throws (and leaves nothing running) if it cannot. */
  start(): Promise<void>;
  /**
   * Applies a configuration that has already been loaded and checked. Throws to refuse it:
   * the caller keeps the running configuration of every service.
   */
  reload(config: LoadedConfig): Promise<void>;
  /** Stops accepting, lets work in flight finish within the grace time, frees everything. */
  close(): Promise<void>;
}

/** Starts services in order; if one fails, closes those already started (in reverse) and throws. */
export async function startAll(services: readonly Service[]): Promise<void> {
  const started: Service[] = [];
  try {
    for (const s of services) {
      await s.start();
      started.push(s);
    }
  } catch (err) {
    await closeAll(started);
    throw err;
  }
}

/** Closes services in reverse order of start; every one is closed even when another fails. */
export async function closeAll(services: readonly Service[]): Promise<void> {
  const errors: unknown[] = [];
  for (const s of [...services].reverse()) await s.close().catch((e) => errors.push(e));
  if (errors.length) throw errors[0];
}
