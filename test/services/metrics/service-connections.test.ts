/**
 * The side services report their connections to the metrics (postseal_service_connections),
 * and an open one keeps the event-loop monitor sampling (services/metrics/event-loop.ts).
 */
import { createProcessMetrics } from '../../../src/services/metrics';
import { PolicyClient, startPolicy, tempSqliteStore, writePolicyConfig } from '../../helpers/policy';
import { connect, startSrsService } from '../../helpers/srs-service';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const stall = (ms: number) => {
  const until = performance.now() + ms;
  while (performance.now() < until);
};

async function gauges(registry: ReturnType<typeof createProcessMetrics>['registry']) {
  const json = await registry.getMetricsAsJSON();
  const conns = json.find((m) => m.name === 'postseal_service_connections')!.values;
  const of = (service: string) => conns.find((v) => v.labels.service === service)?.value;
  const max = json.find((m) => m.name === 'postseal_event_loop_delay_max_seconds')!.values[0].value;
  return { policy: of('policy'), srs: of('srs'), loopMax: max };
}

async function until(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200 && !(await check()); i++) await sleep(10);
}

test('policy and SRS connections are counted while open, and the event-loop delay is sampled meanwhile', async () => {
  const { registry, telemetry } = createProcessMetrics();
  const store = tempSqliteStore();
  const policy = await startPolicy(writePolicyConfig({}), store, { telemetry });
  const srs = await startSrsService({}, undefined, telemetry);
  try {
    expect(await gauges(registry)).toEqual({ policy: 0, srs: 0, loopMax: 0 });
    const client = await PolicyClient.connect(policy.port);
    const sock = await connect(srs.service.ports.socketmap);
    await until(async () => (await gauges(registry)).srs === 1 && (await gauges(registry)).policy === 1);
    await sleep(30);
    stall(60);
    await sleep(30);
    const open = await gauges(registry);
    expect([open.policy, open.srs]).toEqual([1, 1]);
    expect(open.loopMax).toBeGreaterThanOrEqual(0.045);
    client.socket.destroy();
    sock.destroy();
    await until(async () => (await gauges(registry)).policy === 0 && (await gauges(registry)).srs === 0);
    await sleep(30);
    stall(60);
    await sleep(30);
    expect((await gauges(registry)).loopMax).toBe(0);
  } finally {
    await policy.close();
    await srs.service.close();
    await store.close();
  }
});
