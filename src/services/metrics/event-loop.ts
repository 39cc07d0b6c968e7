/**
 * Event-loop delay of this process (issue 18, tail latency): how long the loop went without
 * a turn, from node:perf_hooks' monitorEventLoopDelay (a libuv timer every RESOLUTION_MS,
 * recording how late each one fired). A stall shows as added latency on every session of the
 * worker at once: garbage collection, a long synchronous task, or the main thread waiting for
 * a core. Exposed as gauges of the delays seen since the previous scrape (the histogram is
 * reset when read, as prom-client's own nodejs_eventloop_lag_* gauges do), so one scrape
 * after a load tells that load's worst stall; a cluster's primary reports the worst worker
 * (aggregator max, cluster.ts).
 *
 * The monitor's timer is unref'd by Node: it keeps no process alive. Costs one timer wake-up
 * every RESOLUTION_MS, only when metrics are enabled.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Gauge, type Registry } from 'prom-client';

/** Sampling period of the monitor; a stall shorter than this may go unseen. */
const RESOLUTION_MS = 10;

export function registerEventLoopDelay(registry: Registry): void {
  const histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  histogram.enable();
  let read: { p50: number; p99: number; max: number } | null = null;
  // One read and reset per scrape, shared by the three gauges (whichever collects first).
  const take = () => {
    if (!read) {
      const seen = histogram.count > 0;
      // Nanoseconds; the timer's own period is not a delay.
      const s = (ns: number) => (seen ? Math.max(0, ns / 1e9 - RESOLUTION_MS / 1000) : 0);
      read = { p50: s(histogram.percentile(50)), p99: s(histogram.percentile(99)), max: s(histogram.max) };
      histogram.reset();
      queueMicrotask(() => (read = null));
    }
    return read;
  };
  const gauge = (name: string, help: string, pick: (r: { p50: number; p99: number; max: number }) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      aggregator: 'max',
      collect() {
        this.set(pick(take()));
      },
    });
  gauge('postseal_event_loop_delay_max_seconds', 'Longest event-loop delay since the previous scrape (worst worker in a cluster).', (r) => r.max);
  gauge('postseal_event_loop_delay_p99_seconds', '99th percentile of the event-loop delay since the previous scrape (worst worker).', (r) => r.p99);
  gauge('postseal_event_loop_delay_p50_seconds', 'Median event-loop delay since the previous scrape (worst worker).', (r) => r.p50);
}
