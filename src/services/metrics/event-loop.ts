/**
 * Event-loop delay of this process (issue 18, tail latency): how long the loop went without
 * a turn, from a timer every RESOLUTION_MS that records how late each of its turns came. A
 * stall shows as added latency on every session of the worker at once: garbage collection, a
 * long synchronous task, or the main thread waiting for a core. Exposed as gauges of the delays
 * seen since the previous scrape (the histogram is reset when read, as prom-client's own
 * nodejs_eventloop_lag_* gauges do), so one scrape after a load tells that load's worst stall; a
 * cluster's primary reports the worst worker (aggregator max, cluster.ts).
 *
 * The timer runs only while the process has a connection open (SMTP and milter sessions,
 * policy and SRS clients: `busy`), since a stall delays nobody else: it wakes the process every
 * RESOLUTION_MS, about 8 ms of CPU a second per worker, which an idle postseal spent for nothing
 * (bench/README.md "Idle CPU"). A stall while no connection is open is not seen; with mail
 * flowing, Postfix keeps its connections (content filter, milter, policy) open between messages.
 *
 * Our own timer, not node:perf_hooks' monitorEventLoopDelay: that one, disabled and enabled
 * again, records the whole time it was off as one delay (1 s off read as a 1 s stall), and its
 * histogram cannot be merged into another to keep what it saw before a reset.
 */
import { createHistogram, performance } from 'node:perf_hooks';
import { Gauge, type Registry } from 'prom-client';

/** Sampling period of the monitor; a stall shorter than this may go unseen. */
const RESOLUTION_MS = 10;

export interface LoopMonitor {
  /** A connection opened (+1) or closed (-1): the monitor runs while any is open. */
  busy(delta: 1 | -1): void;
}

export function registerEventLoopDelay(registry: Registry): LoopMonitor {
  // Nanoseconds late, at least 1 (a histogram records only positive integers).
  const histogram = createHistogram();
  let open = 0;
  let timer: NodeJS.Timeout | undefined;
  let last = 0;
  const turn = () => {
    const now = performance.now();
    histogram.record(Math.max(1, Math.round((now - last - RESOLUTION_MS) * 1e6)));
    last = now;
  };
  let read: { p50: number; p99: number; max: number } | null = null;
  // One read and reset per scrape, shared by the three gauges (whichever collects first).
  const take = () => {
    if (!read) {
      const seen = histogram.count > 0;
      const s = (ns: number) => (seen ? ns / 1e9 : 0);
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
  return {
    busy(delta) {
      open = Math.max(0, open + delta);
      if (open > 0 && !timer) {
        last = performance.now();
        timer = setInterval(turn, RESOLUTION_MS).unref();
      } else if (open === 0 && timer) {
        clearInterval(timer);
        timer = undefined;
      }
    },
  };
}
