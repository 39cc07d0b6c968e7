/**
 * Two `postseal start` processes sharing one real Redis (Debian's redis-server): a triplet first
 * seen by instance A passes when the retry reaches instance B; B's whitelist file is read again
 * on SIGHUP. Needs `npm run build` (dist/).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startDaemon, type Daemon } from '../../helpers/cli';
import { PolicyClient, rcptRequest, writePolicyConfig } from '../../helpers/policy';
import { freePort, startRedisServer, type RedisServer } from '../../helpers/redis-server';

jest.setTimeout(60000);

let redis: RedisServer;
const daemons: Daemon[] = [];
beforeAll(async () => {
  redis = await startRedisServer();
});
afterAll(async () => {
  for (const d of daemons) if (d.proc.exitCode === null) d.proc.kill('SIGKILL');
  await redis?.stop();
});

async function instance(dir: string): Promise<{ d: Daemon; port: number }> {
  const port = await freePort();
  const file = writePolicyConfig(
    { port, spf: { enabled: false }, greylist: { delaySec: 2, whitelistClientFiles: ['clients'] } },
    { workers: 1, store: { backend: 'redis', keyPrefix: 'two:', redis: { url: redis.url } } },
    dir,
  );
  const d = startDaemon(file);
  daemons.push(d);
  await d.waitFor((l) => l.msg === 'policy service listening');
  return { d, port };
}

async function ask(port: number, over: Record<string, string> = {}): Promise<string> {
  const c = await PolicyClient.connect(port);
  try {
    return await c.ask(rcptRequest(over));
  } finally {
    c.close();
  }
}

test('a triplet greylisted by instance A passes when the retry reaches instance B', async () => {
  const dirA = mkdtempSync(path.join(tmpdir(), 'postseal-policy-a-'));
  const dirB = mkdtempSync(path.join(tmpdir(), 'postseal-policy-b-'));
  writeFileSync(path.join(dirA, 'clients'), '');
  writeFileSync(path.join(dirB, 'clients'), '');
  const a = await instance(dirA);
  const b = await instance(dirB);
  expect(await ask(a.port)).toMatch(/^DEFER_IF_PERMIT 4\.7\.1 Greylisted, try again in 2 seconds/);
  // Too early on B as well: the first-seen time is shared.
  expect(await ask(b.port)).toMatch(/^DEFER_IF_PERMIT 4\.7\.1 Greylisted, try again in [12] seconds/);
  await new Promise((r) => setTimeout(r, 2200));
  expect(await ask(b.port)).toMatch(/^PREPEND X-Greylist: delayed [23] seconds by postseal at mx\.test\.example; /);
  expect(await ask(a.port)).toBe('DUNNO');

  // B reads its whitelist file again on SIGHUP; A, not told, still greylists the client.
  const other = { client_address: '198.51.100.20', client_name: 'mx.friend.example' };
  expect(await ask(b.port, other)).toMatch(/^DEFER_IF_PERMIT 4\.7\.1/);
  writeFileSync(path.join(dirB, 'clients'), '# postgrey format\nfriend.example\n');
  b.d.proc.kill('SIGHUP');
  await b.d.waitFor((l) => l.msg === 'policy whitelists loaded');
  expect(await ask(b.port, { ...other, recipient: 'x@rcpt.example' })).toBe('DUNNO');
  expect(await ask(a.port, { ...other, recipient: 'x@rcpt.example' })).toMatch(/^DEFER_IF_PERMIT 4\.7\.1/);
});
