/**
 * postseal with `store.backend: redis`, over real SMTP: DMARC results land in Redis, and a
 * Redis outage costs only the records, never the mail.
 */
import Redis from 'ioredis';
import { periodOf } from '../../src/lib/dmarc-report/period';
import { StoredDmarcResults, utcDay } from '../../src/store/dmarc-results';
import { openRedisStore } from '../../src/store/redis';
import { startDnsServer, type DnsServer } from '../helpers/dns-server';
import { startHarness, type Harness } from '../helpers/postseal';
import { startRedisServer, type RedisServer } from '../helpers/redis-server';
import { startSink, type Sink } from '../helpers/sink';
import { TestClient } from '../helpers/smtp-client';

let redis: RedisServer;
let dns: DnsServer;
let sink: Sink;
let h: Harness;
beforeAll(async () => {
  redis = await startRedisServer();
  dns = await startDnsServer({
    '_dmarc.example.org': { TXT: ['v=DMARC1; p=none; rua=mailto:dmarc@example.org'] },
    '_dmarc.hourly.example': { TXT: ['v=DMARC1; p=none; ri=3600; rua=mailto:dmarc@hourly.example'] },
  });
  sink = await startSink();
  h = await startHarness({
    forwardPort: sink.port,
    // Results are kept only with aggregate reports on (nothing of today is finished: nothing is sent).
    banks: { default: { stages: ['spf', 'dmarc'], notify: { host: '127.0.0.1', port: sink.port } } },
    main: {
      dns: { servers: [dns.server], timeoutMs: 2000, retries: 0 },
      store: { backend: 'redis', keyPrefix: 'ps:', redis: { url: redis.url, timeoutMs: 500 } },
      services: { dmarcReports: { enabled: true } },
    },
  });
});
afterAll(async () => {
  await h?.close();
  await sink?.close();
  await dns?.close();
  await redis?.stop();
});

const send = async (from = 'a@example.org') => {
  const c = await TestClient.connect(h.app.portOf('default'));
  const r = await c.send({ from, to: ['b@example.net'], data: `From: ${from}\r\nTo: b@example.net\r\nSubject: s\r\n\r\nbody\r\n` });
  await c.quit();
  return r.final;
};

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
  const before = sink.received.length;
  for (let i = 0; i < 3; i++) expect(await send()).toMatchObject({ code: 250 });
  expect(sink.received.length).toBe(before + 3);
  expect(h.logs.filter((l) => String(l.msg).startsWith('DMARC result not stored'))).toEqual([expect.objectContaining({ code: 'STORE_UNAVAILABLE', heldBack: 0 })]);
  await redis.restart();
});
