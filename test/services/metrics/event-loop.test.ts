import { Registry } from 'prom-client';
import { registerEventLoopDelay } from '../../../src/services/metrics/event-loop';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const stall = (ms: number) => {
  const until = performance.now() + ms;
  while (performance.now() < until);
};
async function read(registry: Registry): Promise<Record<'max' | 'p99' | 'p50', number>> {
  const json = await registry.getMetricsAsJSON();
  const of = (q: string) => json.find((m) => m.name === `postseal_event_loop_delay_${q}_seconds`)!.values[0].value;
  return { max: of('max'), p99: of('p99'), p50: of('p50') };
}

describe('the event-loop delay gauges', () => {
  it('show a 60 ms stall of the event loop as its longest delay, not as the median', async () => {
    const registry = new Registry();
    const loop = registerEventLoopDelay(registry);
    loop.busy(1);
    await sleep(50);
    stall(60);
    await sleep(50);
    const d = await read(registry);
    expect(d.max).toBeGreaterThanOrEqual(0.045);
    expect(d.max).toBeLessThan(0.5);
    expect(d.p50).toBeLessThan(d.max);
    loop.busy(-1);
  });

  it('report each stall once: a scrape resets them, so the next one sees only what came after', async () => {
    const registry = new Registry();
    const loop = registerEventLoopDelay(registry);
    loop.busy(1);
    await sleep(30);
    stall(80);
    await sleep(30);
    expect((await read(registry)).max).toBeGreaterThanOrEqual(0.065);
    await sleep(60);
    expect((await read(registry)).max).toBeLessThan(0.065);
    loop.busy(-1);
  });

  it('sample only while a connection is open: an idle process is not woken every 10 ms, and sees no stall', async () => {
    const registry = new Registry();
    const loop = registerEventLoopDelay(registry);
    await sleep(30);
    stall(60);
    await sleep(30);
    expect(await read(registry)).toEqual({ max: 0, p99: 0, p50: 0 });
    // Two connections, one closes: still sampled.
    loop.busy(1);
    loop.busy(1);
    loop.busy(-1);
    await sleep(30);
    stall(60);
    await sleep(30);
    expect((await read(registry)).max).toBeGreaterThanOrEqual(0.045);
    loop.busy(-1);
    await sleep(30);
    stall(60);
    await sleep(30);
    expect((await read(registry)).max).toBe(0);
  });

  it('do not count the time without connections as a delay when one opens again', async () => {
    // node:perf_hooks' monitorEventLoopDelay, disabled and enabled again, reads the time it was off as one delay.
    const registry = new Registry();
    const loop = registerEventLoopDelay(registry);
    loop.busy(1);
    await sleep(30);
    loop.busy(-1);
    await sleep(300);
    loop.busy(1);
    await sleep(50);
    expect((await read(registry)).max).toBeLessThan(0.1);
    loop.busy(-1);
  });
});
