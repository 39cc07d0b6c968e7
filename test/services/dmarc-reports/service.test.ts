import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import pino from 'pino';
import YAML from 'yaml';
import { isPostsealError } from '../../../src/errors';
import { createDnsResolver } from '../../../src/lib/dns';
import { DmarcReportsService } from '../../../src/services/dmarc-reports';
import { loadConfig } from '../../../src/setup';
import { StoredDmarcResults } from '../../../src/store/dmarc-results';
import { openRedisStore } from '../../../src/store/redis';
import { openSqliteStore } from '../../../src/store/sqlite';
import type { Store } from '../../../src/store/store';
import { startDnsServer, type DnsServer } from '../../helpers/dns-server';
import { startRedisServer } from '../../helpers/redis-server';
import { afterToday, clearOfMidnight } from '../../helpers/report-day';
import { startHarness } from '../../helpers/postseal';
import { startSink, type Sink } from '../../helpers/sink';
import { TestClient } from '../../helpers/smtp-client';
import { utcDay } from '../../../src/store/dmarc-results';

const log = pino({ level: 'silent' });
let dns: DnsServer;
let sink: Sink;

/** A main file and a bank folder whose default bank's notify target is the sink. */
function writeConfig(dmarcReports: Record<string, unknown>, notifyPort: number | null): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'dmarc-service-'));
  mkdirSync(path.join(dir, 'banks'));
  const bank = YAML.parse(readFileSync(path.join(__dirname, '../../../policy-banks/default.yaml'), 'utf8'));
  if (notifyPort === null) delete bank.notify;
  else bank.notify = { protocol: 'smtp', host: '127.0.0.1', port: notifyPort };
  writeFileSync(path.join(dir, 'banks', 'default.yaml'), YAML.stringify(bank));
  const main = {
    bankDir: 'banks',
    listeners: [{ port: 0, bank: 'default' }],
    hostname: 'mx.receiver.test',
    services: { dmarcReports: { enabled: true, ...dmarcReports } },
  };
  writeFileSync(path.join(dir, 'postseal.yaml'), YAML.stringify(main));
  return path.join(dir, 'postseal.yaml');
}

beforeAll(async () => {
  dns = await startDnsServer({ '_dmarc.a.test': { TXT: ['v=DMARC1; p=none; rua=mailto:agg@a.test'] } });
  sink = await startSink();
});
afterAll(async () => {
  await sink.close();
  await dns.close();
});

describe('DMARC reports service', () => {
  /** Each of two senders on one store records five results of one period (ri=requestedIntervalSec); one report, counts 5 and 5, covers `begin`..`end`. */
  async function twoSendersOneReport(
    open: () => Promise<Store>,
    requestedIntervalSec?: number,
    expected = { begin: Date.parse('2026-12-06T00:00:00Z') / 1000, end: Date.parse('2026-12-06T23:59:59Z') / 1000 },
  ): Promise<void> {
    sink.received.length = 0;
    const config = loadConfig(writeConfig({}, sink.port));
    const stores = [await open(), await open()];
    const resolver = createDnsResolver({ servers: [dns.server], timeoutMs: 2000, retries: 0, cacheMaxEntries: 0, cacheMaxTtlSec: 0 });
    const now = () => new Date('2026-12-07T06:00:00Z');
    const services = stores.map((store) => new DmarcReportsService(config, { store, results: new StoredDmarcResults(store), resolver, log, now }));
    // Each process (or host) records half of the day's mail.
    for (const [i, store] of stores.entries()) {
      for (let n = 0; n < 5; n++) {
        await new StoredDmarcResults(store).record({
          receivedAt: new Date('2026-12-06T10:00:00Z'),
          sourceIp: `192.0.2.${i + 1}`,
          headerFrom: 'a.test',
          policyDomain: 'a.test',
          policy: 'none',
          result: 'fail',
          disposition: 'none',
          dkim: [],
          spf: { domain: 'other.test', result: 'fail' },
          requestedIntervalSec,
        });
      }
    }
    await Promise.all(services.map((s) => s.runOnce()));
    await Promise.all(services.map((s) => s.runOnce()));
    expect(sink.received).toHaveLength(1);
    const text = sink.received[0].data.toString('utf8');
    expect(text).toContain(`filename="mx.receiver.test!a.test!${expected.begin}!${expected.end}.xml.gz"`);
    expect(text).toContain('Subject: Report Domain: a.test Submitter: mx.receiver.test Report-ID:');
    expect(text).toContain('From: dmarc-reports@mx.receiver.test');
    const b64 = /filename="[^"]+\.xml\.gz"\r\n\r\n([A-Za-z0-9+/=\r\n]+?)\r\n--/.exec(text)?.[1] ?? '';
    const xml = gunzipSync(Buffer.from(b64, 'base64')).toString('utf8');
    expect([...xml.matchAll(/<count>(\d+)<\/count>/g)].map((m) => Number(m[1])).sort()).toEqual([5, 5]);
    expect(xml).toContain(`<date_range><begin>${expected.begin}</begin><end>${expected.end}</end></date_range>`);
    expect(await new StoredDmarcResults(stores[0]).periods()).toEqual([]);
    for (const s of services) await s.close();
    for (const s of stores) await s.close();
  }

  test('two processes on one sqlite file send one report per domain and day, with every record counted', async () => {
    const dbDir = mkdtempSync(path.join(tmpdir(), 'dmarc-service-db-'));
    await twoSendersOneReport(async () => openSqliteStore({ file: path.join(dbDir, 'state.db'), keyPrefix: 'postseal:', busyTimeoutMs: 2000 }));
  });

  test('two hosts on one Redis send one report per domain and day whose counts are the sum of both', async () => {
    const redis = await startRedisServer();
    try {
      await twoSendersOneReport(() => openRedisStore({ url: redis.url, keyPrefix: 'two:', timeoutMs: 2000, log }));
    } finally {
      await redis.stop();
    }
  });

  test('two hosts on one Redis send one report per domain and hour (ri=3600) whose counts are the sum of both', async () => {
    const redis = await startRedisServer();
    try {
      const ten = Date.parse('2026-12-06T10:00:00Z') / 1000;
      await twoSendersOneReport(() => openRedisStore({ url: redis.url, keyPrefix: 'two-hourly:', timeoutMs: 2000, log }), 3600, { begin: ten, end: ten + 3599 });
    } finally {
      await redis.stop();
    }
  });

  test('two postseal instances on one Redis record their mail there, and one report per domain and day carries the sum of both', async () => {
    await clearOfMidnight(20_000);
    sink.received.length = 0;
    const redis = await startRedisServer();
    const mailSink = await startSink();
    const instances = [] as Awaited<ReturnType<typeof startHarness>>[];
    const stores: Store[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        instances.push(
          await startHarness({
            forwardPort: mailSink.port,
            // Reports on (results are kept only then); their own passes find nothing finished.
            banks: { default: { stages: ['spf', 'dmarc'], notify: { host: '127.0.0.1', port: mailSink.port } } },
            main: {
              dns: { servers: [dns.server], timeoutMs: 2000, retries: 0 },
              store: { backend: 'redis', keyPrefix: 'hosts:', redis: { url: redis.url, timeoutMs: 2000 } },
              services: { dmarcReports: { enabled: true } },
            },
          }),
        );
      }
      // Host 1 sees three messages from a.test, host 2 two from its subdomain (same policy domain).
      const send = async (i: number, from: string) => {
        const c = await TestClient.connect(instances[i].app.portOf('default'));
        const r = await c.send({ from, to: ['b@example.net'], data: `From: ${from}\r\nTo: b@example.net\r\nSubject: s\r\n\r\nbody\r\n` });
        await c.quit();
        expect(r.final).toMatchObject({ code: 250 });
      };
      for (let n = 0; n < 3; n++) await send(0, 'a@a.test');
      for (let n = 0; n < 2; n++) await send(1, 'x@mail.a.test');
      // Each host's report sender, with its own connection, once the day is over.
      const tomorrow = afterToday();
      const config = loadConfig(writeConfig({}, sink.port));
      const resolver = createDnsResolver({ servers: [dns.server], timeoutMs: 2000, retries: 0, cacheMaxEntries: 0, cacheMaxTtlSec: 0 });
      for (let i = 0; i < 2; i++) stores.push(await openRedisStore({ url: redis.url, keyPrefix: 'hosts:', timeoutMs: 2000, log }));
      const services = stores.map((store) => new DmarcReportsService(config, { store, results: new StoredDmarcResults(store), resolver, log, now: () => tomorrow }));
      await Promise.all(services.map((s) => s.runOnce()));
      await Promise.all(services.map((s) => s.runOnce()));
      for (const s of services) await s.close();
      expect(sink.received).toHaveLength(1);
      const text = sink.received[0].data.toString('utf8');
      expect(text).toContain(`Report-ID: <a.test.${utcDay(new Date())}.`);
      const b64 = /filename="[^"]+\.xml\.gz"\r\n\r\n([A-Za-z0-9+/=\r\n]+?)\r\n--/.exec(text)?.[1] ?? '';
      const xml = gunzipSync(Buffer.from(b64, 'base64')).toString('utf8');
      const rows = [...xml.matchAll(/<count>(\d+)<\/count>[\s\S]*?<header_from>([^<]+)<\/header_from>/g)].map((m) => `${m[1]} ${m[2]}`);
      expect(rows.sort()).toEqual(['2 mail.a.test', '3 a.test']);
      expect(await new StoredDmarcResults(stores[0]).periods()).toEqual([]);
    } finally {
      for (const h of instances) await h.close();
      for (const s of stores) await s.close();
      await mailSink.close();
      await redis.stop();
    }
  }, 60_000);

  test('close during a pass whose DNS never answers ends the pass after the domain-period in hand', async () => {
    dns.zone['_dmarc.slow1.test'] = { behaviour: 'timeout' };
    dns.zone['_dmarc.slow2.test'] = { behaviour: 'timeout' };
    const config = loadConfig(writeConfig({}, sink.port));
    const store = openSqliteStore({ file: path.join(mkdtempSync(path.join(tmpdir(), 'dmarc-service-db-')), 's.db'), keyPrefix: 'p:', busyTimeoutMs: 1000 });
    const results = new StoredDmarcResults(store);
    for (const domain of ['slow1.test', 'slow2.test'])
      await results.record({
        receivedAt: new Date('2026-12-06T10:00:00Z'),
        headerFrom: domain,
        policyDomain: domain,
        policy: 'none',
        result: 'fail',
        disposition: 'none',
        dkim: [],
      });
    const resolver = createDnsResolver({ servers: [dns.server], timeoutMs: 1000, retries: 0, cacheMaxEntries: 0, cacheMaxTtlSec: 0 });
    const service = new DmarcReportsService(config, { store, results, resolver, log, now: () => new Date('2026-12-07T06:00:00Z') });
    const asked = (name: string) => dns.queries.some((q) => q.name === name);
    void service.runOnce();
    while (!asked('_dmarc.slow1.test')) await new Promise((resolve) => setTimeout(resolve, 5));
    await service.close();
    // slow2.test would have been looked up after slow1.test's lookup timed out.
    expect(asked('_dmarc.slow2.test')).toBe(false);
    expect(await results.periods()).toHaveLength(2);
    await store.close();
  });

  test('a bank without a notify target stops the service with CFG_INCONSISTENT', () => {
    const config = loadConfig(writeConfig({}, null));
    const store = openSqliteStore({ file: path.join(mkdtempSync(path.join(tmpdir(), 'dmarc-service-db-')), 's.db'), keyPrefix: 'p:', busyTimeoutMs: 1000 });
    const resolver = createDnsResolver({ servers: [dns.server], timeoutMs: 2000, retries: 0, cacheMaxEntries: 0, cacheMaxTtlSec: 0 });
    let caught: unknown;
    try {
      new DmarcReportsService(config, { store, results: new StoredDmarcResults(store), resolver, log });
    } catch (err) {
      caught = err;
    }
    expect(isPostsealError(caught, 'CFG_INCONSISTENT')).toBe(true);
    void store.close();
  });

  test('a from domain without a signing key is warned about at start and at reload: its reports go out unsigned', async () => {
    const config = loadConfig(writeConfig({ from: 'reports@unsigned.test' }, sink.port));
    const store = openSqliteStore({ file: path.join(mkdtempSync(path.join(tmpdir(), 'dmarc-service-db-')), 's.db'), keyPrefix: 'p:', busyTimeoutMs: 1000 });
    const resolver = createDnsResolver({ servers: [dns.server], timeoutMs: 2000, retries: 0, cacheMaxEntries: 0, cacheMaxTtlSec: 0 });
    const warnings: { obj: unknown; msg: string }[] = [];
    const capture = { warn: (obj: unknown, msg: string) => void warnings.push({ obj, msg }), info() {}, error() {} } as unknown as typeof log;
    const service = new DmarcReportsService(config, { store, results: new StoredDmarcResults(store), resolver, log: capture });
    await service.reload(config);
    expect(warnings.filter((w) => w.msg.startsWith('no DKIM key for report mail'))).toHaveLength(2);
    expect(warnings[0].obj).toEqual({ from: 'reports@unsigned.test' });
    await service.close();
    await store.close();
  });
});
