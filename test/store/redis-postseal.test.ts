/**
 * postseal with `store.backend: redis`, over real SMTP: DMARC results land in Redis, and a
 * Redis outage costs only the records, never the mail.
 */
import { type DmarcHarness, startDmarcHarness } from '../helpers/dmarc-harness';
import Redis from 'ioredis';
import { periodOf } from '../../src/lib/dmarc-report/period';
import { StoredDmarcResults, utcDay } from '../../src/store/dmarc-results';
import { openRedisStore } from '../../src/store/redis';
import { startRedisServer, type RedisServer } from '../helpers/redis-server';

let redis: RedisServer;
let w: DmarcHarness;
beforeAll(async () => {
  redis = await startRedisServer();
  w = await startDmarcHarness(
    {
      '_dmarc.example.org': { TXT: ['v=DMARC1; p=none; rua=mailto:dmarc@example.org'] },
      '_dmarc.hourly.example': { TXT: ['v=DMARC1; p=none; ri=3600; rua=mailto:dmarc@hourly.example'] },
    },
    { backend: 'redis', keyPrefix: 'ps:', redis: { url: redis.url, timeoutMs: 500 } },
  );
});
afterAll(async () => {
  await w?.close();
  await redis?.stop();
});

const send = (from?: string) => w.send(from);

test('each message leaves its DMARC result in Redis under the configured prefix', async () => {
  expect(await send()).toMatchObject({ code: 250 });
  const admin = new Redis(redis.url);
  try {
    expect(await admin.keys('ps:dmarc-rows:*')).toEqual([`ps:dmarc-rows:example.org:${utcDay(new Date())}`]);
  } finally {
    admin.disconnect();
  }
  const reader = await openRedisStore({ url: redis.url, keyPrefix: 'ps:', timeoutMs: 500 });
  try {
    expect(await new StoredDmarcResults(reader).take('example.org', utcDay(new Date()))).toEqual([expect.objectContaining({ headerFrom: 'example.org', policy: 'none' })]);
  } finally {
    await reader.close();
  }
});

test("a domain whose record says ri=3600 has its result in Redis under the UTC hour's key", async () => {
  const before = periodOf(new Date(), 3600).id;
  expect(await send('a@hourly.example')).toMatchObject({ code: 250 });
  const after = periodOf(new Date(), 3600).id;
  const admin = new Redis(redis.url);
  try {
    const keys = await admin.keys('ps:dmarc-rows:hourly.example:*');
    expect(keys).toHaveLength(1);
    expect([before, after].map((id) => `ps:dmarc-rows:hourly.example:${id}`)).toContain(keys[0]);
  } finally {
    admin.disconnect();
  }
});

test('while Redis is down mail is still delivered and the lost records are logged, one line a minute', async () => {
  await redis.kill();
  const before = w.sink.received.length;
  for (let i = 0; i < 3; i++) expect(await send()).toMatchObject({ code: 250 });
  expect(w.sink.received.length).toBe(before + 3);
  expect(w.h.logs.filter((l) => String(l.msg).startsWith('DMARC result not stored'))).toEqual([expect.objectContaining({ code: 'STORE_UNAVAILABLE', heldBack: 0 })]);
  await redis.restart();
});
