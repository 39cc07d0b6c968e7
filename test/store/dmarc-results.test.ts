/**
 * DMARC results in the shared store (src/store/dmarc-results.ts): one capped, expiring list
 * per policy domain and report period (the UTC day, or shorter as the record's ri= asks), taken whole by a report sender; and postseal itself writing
 * every evaluated message there, over SMTP, through a reload, into the store it opened once.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { periodOf } from '../../src/lib/dmarc-report/period';
import { loadConfig } from '../../src/setup';
import { MAX_RECORD_CHARS, MAX_STORED_SIGNATURES, StoredDmarcResults, utcDay, type DmarcResultRecord } from '../../src/store/dmarc-results';
import { openSqliteStore } from '../../src/store/sqlite';
import type { Store } from '../../src/store/store';
import { type DmarcHarness, startDmarcHarness } from '../helpers/dmarc-harness';
import { startDnsServer } from '../helpers/dns-server';
import { startHarness, type Harness } from '../helpers/postseal';
import { startSink } from '../helpers/sink';
import { TestClient } from '../helpers/smtp-client';
import { sleep } from './contract';

const dir = mkdtempSync(path.join(tmpdir(), 'postseal-dmarc-store-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const record = (over: Partial<DmarcResultRecord> = {}): DmarcResultRecord => ({
  receivedAt: new Date('2026-03-01T23:59:59.500Z'),
  sourceIp: '192.0.2.1',
  headerFrom: 'mail.example.org',
  policyDomain: 'example.org',
  policy: 'reject',
  result: 'fail',
  disposition: 'reject',
  dkim: [{ domain: 'example.org', selector: 's1', result: 'fail' }],
  spf: { domain: 'example.org', result: 'softfail' },
  ...over,
});

describe('StoredDmarcResults', () => {
  let store: Store;
  beforeEach(() => {
    store = openSqliteStore({ file: path.join(dir, 'unit.db'), keyPrefix: `u${Date.now()}:`, busyTimeoutMs: 1000 });
  });
  afterEach(() => store.close());

  test('results are kept per policy domain and UTC day as rows with counts, and take returns them once', async () => {
    const results = new StoredDmarcResults(store);
    const late = record();
    const nextDay = record({ receivedAt: new Date('2026-03-02T00:00:00.000Z'), result: 'pass', disposition: 'none' });
    await results.record(late);
    await results.record({ ...late, receivedAt: new Date('2026-03-01T08:00:00Z') });
    await results.record(nextDay);
    await results.record(record({ policyDomain: 'Other.EXAMPLE' }));
    expect((await results.periods()).sort((a, b) => (a.policyDomain + a.period).localeCompare(b.policyDomain + b.period))).toEqual([
      { policyDomain: 'example.org', period: '2026-03-01' },
      { policyDomain: 'example.org', period: '2026-03-02' },
      { policyDomain: 'other.example', period: '2026-03-01' },
    ]);
    // One row for two messages: what the report shows of them, and their count.
    const { receivedAt: _t, policyDomain: _d, ...shown } = late;
    expect(await results.take('example.org', '2026-03-01')).toEqual([{ ...shown, k: expect.stringMatching(/^[0-9a-f]{24}$/), count: 2 }]);
    expect(await results.take('example.org', '2026-03-01')).toEqual([]);
    expect(await results.take('EXAMPLE.org', '2026-03-02')).toEqual([expect.objectContaining({ result: 'pass', disposition: 'none', count: 1 })]);
  });

  test('a result without a policy domain has no one to report to and is not kept', async () => {
    const results = new StoredDmarcResults(store);
    await results.record(record({ policyDomain: undefined, result: 'none', policy: undefined }));
    expect(await results.periods()).toEqual([]);
  });

  test('a period keeps at most maxPerPeriod rows, the first ones, counts the messages of the rest, and expires retentionMs after its last result', async () => {
    const results = new StoredDmarcResults(store, { retentionMs: 100, maxPerPeriod: 3 });
    for (let i = 1; i <= 5; i++) await results.record(record({ sourceIp: `192.0.2.${i}` }));
    // Rows already kept go on counting.
    await results.record(record({ sourceIp: '192.0.2.1' }));
    // A flood arriving after a domain's real mail cannot push the real rows out.
    const read = await results.peek('example.org', '2026-03-01');
    expect([read.records.map((r) => `${r.sourceIp} ${r.count}`), read.messages, read.over]).toEqual([['192.0.2.1 2', '192.0.2.2 1', '192.0.2.3 1'], 4, 2]);
    await results.remove('example.org', '2026-03-01', read);
    // The room is given back.
    await results.record(record({ sourceIp: '192.0.2.9' }));
    expect(await results.peek('example.org', '2026-03-01')).toMatchObject({ messages: 1, over: 0 });
    await sleep(200);
    expect(await results.periods()).toEqual([]);
  });

  test('results that arrive between peek and remove are not lost, at the row cap or not', async () => {
    const results = new StoredDmarcResults(store, { maxPerPeriod: 3 });
    for (let i = 0; i < 3; i++) await results.record(record({ sourceIp: `192.0.2.${i}` }));
    const read = await results.peek('example.org', '2026-03-01');
    // A new row past the cap, and one more message of a row the report covers.
    await results.record(record({ sourceIp: '203.0.113.9' }));
    await results.record(record({ sourceIp: '192.0.2.0' }));
    await results.remove('example.org', '2026-03-01', read);
    const left = await results.peek('example.org', '2026-03-01');
    expect([left.records.map((r) => `${r.sourceIp} ${r.count}`), left.over]).toEqual([['192.0.2.0 1'], 1]);
  });

  test('a flood of messages with one result set is one row: the store grows with distinct rows, not messages', async () => {
    const results = new StoredDmarcResults(store);
    for (let i = 0; i < 500; i++) await results.record(record());
    expect(await store.range('dmarc-rows:example.org:2026-03-01')).toHaveLength(1);
    expect(await results.peek('example.org', '2026-03-01')).toMatchObject({ messages: 500, over: 0 });
  });

  test('a result recorded again under the same retry id is not counted twice', async () => {
    const results = new StoredDmarcResults(store);
    await results.record(record(), { once: 'abc' });
    await results.record(record(), { once: 'abc' });
    await results.record(record(), { once: 'def' });
    await results.record(record());
    expect((await results.peek('example.org', '2026-03-01')).messages).toBe(3);
  });

  test('a record with a flood of DKIM results and long names is stored small', async () => {
    const results = new StoredDmarcResults(store);
    const sig = { domain: `${'a'.repeat(60)}.${'b'.repeat(400)}`, selector: 's'.repeat(400), result: 'neutral' };
    await results.record(record({ dkim: Array.from({ length: 2000 }, () => sig), headerFrom: 'h'.repeat(5000) }));
    const items = await store.range('dmarc-rows:example.org:2026-03-01');
    expect(items).toHaveLength(1);
    expect(items[0].length).toBeLessThanOrEqual(MAX_RECORD_CHARS + 100);
    const [r] = (await results.peek('example.org', '2026-03-01')).records;
    expect(r.dkim.length).toBeLessThanOrEqual(MAX_STORED_SIGNATURES);
    expect(r.dkim[0]).toEqual({ domain: sig.domain.slice(0, 253), selector: 's'.repeat(63), result: 'neutral' });
    expect(r.headerFrom).toHaveLength(253);
  });

  test("maxDomainsPerDay counts organizational domains: an attacker's subdomains do not shut out the day's other domains", async () => {
    const warnings: unknown[] = [];
    const results = new StoredDmarcResults(store, {
      maxDomainsPerDay: 5,
      maxPeriodsPerOrgDomain: 3,
      log: { warn: (o: unknown) => void warnings.push(o), error: (o: unknown) => void warnings.push(o) },
    });
    for (let i = 0; i < 50; i++) await results.record(record({ receivedAt: new Date('2026-03-01T00:00:01Z'), policyDomain: `n${i}.attacker.example.com` }));
    await results.record(record({ receivedAt: new Date('2026-03-01T08:00:00Z'), policyDomain: 'bigbank.co.uk' }));
    const kept = (await results.periods()).map((p) => p.policyDomain);
    expect(kept).toContain('bigbank.co.uk');
    // The attacker's organizational domain gets its own share only.
    expect(kept.filter((d) => d.endsWith('.attacker.example.com'))).toHaveLength(3);
    expect(warnings).toEqual([{ day: '2026-03-01', policyDomain: 'n3.attacker.example.com', cap: 'maxPeriodsPerOrgDomain (3) for example.com' }]);
  });

  test('periods lists the oldest days first whatever was stored when, and drops what prune is told is done', async () => {
    const results = new StoredDmarcResults(store);
    for (const [d, t] of [
      ['new.test', '2026-03-05T01:00:00Z'],
      ['old.test', '2026-03-01T01:00:00Z'],
      ['mid.test', '2026-03-03T01:00:00Z'],
      ['old2.test', '2026-03-01T02:00:00Z'],
    ])
      await results.record(record({ policyDomain: d, receivedAt: new Date(t) }));
    expect((await results.periods()).map((p) => p.policyDomain)).toEqual(['old.test', 'old2.test', 'mid.test', 'new.test']);
    expect((await results.periods(2)).map((p) => p.policyDomain)).toEqual(['old.test', 'old2.test']);
    await results.remove('old.test', '2026-03-01', await results.peek('old.test', '2026-03-01'));
    // Told done but records left (mid.test): kept.
    await results.prune([
      { policyDomain: 'old.test', period: '2026-03-01' },
      { policyDomain: 'mid.test', period: '2026-03-03' },
    ]);
    expect((await results.periods()).map((p) => p.policyDomain)).toEqual(['old2.test', 'mid.test', 'new.test']);
  });

  test('a day keeps results of at most maxDomainsPerDay policy domains, and says so once', async () => {
    const warnings: unknown[] = [];
    const results = new StoredDmarcResults(store, { maxDomainsPerDay: 2, log: { warn: (o: unknown) => void warnings.push(o), error: (o: unknown) => void warnings.push(o) } });
    for (const d of ['a.test', 'b.test', 'c.test', 'd.test', 'a.test', 'c.test']) await results.record(record({ policyDomain: d }));
    expect((await results.periods()).map((x) => x.policyDomain).sort()).toEqual(['a.test', 'b.test']);
    expect((await results.peek('a.test', '2026-03-01')).messages).toBe(2);
    expect(warnings).toEqual([{ day: '2026-03-01', policyDomain: 'c.test', cap: 'maxDomainsPerDay (2)' }]);
    // Another day has its own count.
    await results.record(record({ policyDomain: 'c.test', receivedAt: new Date('2026-03-02T01:00:00Z') }));
    expect(await results.periods()).toContainEqual({ policyDomain: 'c.test', period: '2026-03-02' });
  });

  test('a day keeps at most maxRecordsPerDay results over all domains, and says so once', async () => {
    const warnings: unknown[] = [];
    const results = new StoredDmarcResults(store, { maxRecordsPerDay: 3, log: { warn: (o: unknown) => void warnings.push(o), error: (o: unknown) => void warnings.push(o) } });
    for (const d of ['a.test', 'b.test', 'a.test', 'c.test', 'b.test']) await results.record(record({ policyDomain: d }));
    expect((await results.peek('a.test', '2026-03-01')).messages + (await results.peek('b.test', '2026-03-01')).messages).toBe(3);
    expect(await results.periods()).not.toContainEqual(expect.objectContaining({ policyDomain: 'c.test' }));
    expect(warnings).toEqual([{ day: '2026-03-01', policyDomain: 'c.test', cap: 'maxRecordsPerDay (3)' }]);
  });

  test("a result is stored in the report period its record's ri= asked for, raised to the minimum and at most a day", async () => {
    const results = new StoredDmarcResults(store, { minIntervalSec: 3600 });
    const at = new Date('2026-03-01T13:45:00Z');
    const cases: [string, number | undefined, string][] = [
      ['hourly.test', 3600, '2026-03-01T13Z/1h'],
      ['daily.test', 86400, '2026-03-01'],
      ['absent.test', undefined, '2026-03-01'],
      ['tiny.test', 60, '2026-03-01T13Z/1h'],
      ['long.test', 100000, '2026-03-01'],
      ['odd.test', 5000, '2026-03-01T13Z/1h'],
      ['five-hours.test', 18000, '2026-03-01T12Z/4h'],
    ];
    for (const [policyDomain, requestedIntervalSec] of cases) await results.record(record({ policyDomain, receivedAt: at, requestedIntervalSec }));
    const stored = new Map((await results.periods()).map((p) => [p.policyDomain, p.period]));
    expect(Object.fromEntries(stored)).toEqual(Object.fromEntries(cases.map(([d, , period]) => [d, period])));
    expect(await results.take('hourly.test', '2026-03-01T13Z/1h')).toEqual([expect.objectContaining({ headerFrom: 'mail.example.org', count: 1 })]);
  });

  test('minIntervalSec raises short ri= values to a longer period', async () => {
    const results = new StoredDmarcResults(store, { minIntervalSec: 4 * 3600 });
    await results.record(record({ requestedIntervalSec: 3600, receivedAt: new Date('2026-03-01T13:45:00Z') }));
    expect(await results.periods()).toEqual([{ policyDomain: 'example.org', period: '2026-03-01T12Z/4h' }]);
  });

  test('an hourly period is taken without touching the other hours of its day', async () => {
    const results = new StoredDmarcResults(store);
    for (const t of ['2026-03-01T03:10:00Z', '2026-03-01T03:59:59Z', '2026-03-01T04:00:00Z']) await results.record(record({ receivedAt: new Date(t), requestedIntervalSec: 3600 }));
    expect((await results.take('example.org', '2026-03-01T03Z/1h')).map((r) => r.count)).toEqual([2]);
    expect(await results.periods()).toEqual([{ policyDomain: 'example.org', period: '2026-03-01T04Z/1h' }]);
  });

  test('maxDomainsPerDay counts a domain once a day whatever its periods, and a refused domain stays refused in its later periods', async () => {
    const results = new StoredDmarcResults(store, { maxDomainsPerDay: 1 });
    const hourly = (policyDomain: string, t: string) => results.record(record({ policyDomain, receivedAt: new Date(t), requestedIntervalSec: 3600 }));
    await hourly('a.test', '2026-03-01T01:00:00Z');
    await hourly('a.test', '2026-03-01T02:00:00Z');
    await hourly('b.test', '2026-03-01T02:00:00Z');
    await hourly('b.test', '2026-03-01T03:00:00Z');
    await hourly('a.test', '2026-03-01T03:00:00Z');
    expect((await results.periods()).map((p) => `${p.policyDomain} ${p.period}`).sort()).toEqual([
      'a.test 2026-03-01T01Z/1h',
      'a.test 2026-03-01T02Z/1h',
      'a.test 2026-03-01T03Z/1h',
    ]);
  });

  test('utcDay is the UTC date, whatever the local time zone', () => {
    expect(utcDay(new Date('2026-03-01T23:59:59.999-05:00'))).toBe('2026-03-02');
  });
});

describe('postseal writes DMARC results to the store it opened at start-up', () => {
  let w: DmarcHarness;
  let h: Harness;
  beforeAll(async () => {
    w = await startDmarcHarness({
      '_dmarc.example.org': { TXT: ['v=DMARC1; p=none; rua=mailto:dmarc@example.org'] },
      '_dmarc.hourly.example': { TXT: ['v=DMARC1; p=none; ri=3600; rua=mailto:dmarc@hourly.example'] },
    });
    h = w.h;
  });
  afterAll(async () => {
    await w?.close();
  });

  const send = async (from?: string) => expect(await w.send(from)).toMatchObject({ code: 250 });

  test('each message leaves one record in postseal.db next to the config file, also after a reload', async () => {
    // A second handle on the file, as another worker of the host would have.
    const reader = openSqliteStore({ file: path.join(h.dir, 'postseal.db'), keyPrefix: 'postseal:', busyTimeoutMs: 1000 });
    try {
      const results = new StoredDmarcResults(reader);
      await send();
      const today = utcDay(new Date());
      expect(await results.periods()).toEqual([{ policyDomain: 'example.org', period: today }]);
      expect(await results.take('example.org', today)).toEqual([expect.objectContaining({ headerFrom: 'example.org', result: 'fail', policy: 'none', disposition: 'none' })]);
      await h.app.reload(loadConfig(path.join(h.dir, 'postseal.yaml')));
      await send();
      expect(await results.take('example.org', today)).toHaveLength(1);
      // The reload reused the store: it was opened once.
      expect(h.logs.filter((l) => l.msg === 'store opened')).toHaveLength(1);
    } finally {
      await reader.close();
    }
  });

  test("a domain whose record says ri=3600 has its results stored in the current UTC hour's period", async () => {
    const reader = openSqliteStore({ file: path.join(h.dir, 'postseal.db'), keyPrefix: 'postseal:', busyTimeoutMs: 1000 });
    try {
      const before = periodOf(new Date(), 3600).id;
      await send('a@hourly.example');
      const after = periodOf(new Date(), 3600).id;
      const stored = (await new StoredDmarcResults(reader).periods()).filter((p) => p.policyDomain === 'hourly.example');
      expect(stored).toHaveLength(1);
      expect([before, after]).toContain(stored[0].period);
      expect(await new StoredDmarcResults(reader).take('hourly.example', stored[0].period)).toEqual([expect.objectContaining({ headerFrom: 'hourly.example', count: 1 })]);
    } finally {
      await reader.close();
    }
  });

  test('a reload with changed store settings keeps the running store and says so', async () => {
    const file = path.join(h.dir, 'postseal.yaml');
    const config = YAML.parse(readFileSync(file, 'utf8'));
    writeFileSync(file, YAML.stringify({ ...config, store: { keyPrefix: 'elsewhere:' } }));
    await h.app.reload(loadConfig(file));
    expect(h.logs.some((l) => l.level === 40 && l.msg === 'store settings changed; they apply at the next start, the running store stays open')).toBe(true);
    const reader = openSqliteStore({ file: path.join(h.dir, 'postseal.db'), keyPrefix: 'postseal:', busyTimeoutMs: 1000 });
    try {
      await send();
      expect(await new StoredDmarcResults(reader).take('example.org', utcDay(new Date()))).toHaveLength(1);
    } finally {
      await reader.close();
    }
  });
});

describe('postseal with aggregate reports off (the default)', () => {
  test('stores no DMARC results: nobody would send them', async () => {
    const dns = await startDnsServer({ '_dmarc.example.org': { TXT: ['v=DMARC1; p=none; rua=mailto:dmarc@example.org'] } });
    const sink = await startSink();
    const h = await startHarness({
      forwardPort: sink.port,
      banks: { default: { stages: ['spf', 'dmarc'] } },
      main: { dns: { servers: [dns.server], timeoutMs: 2000, retries: 0 } },
    });
    const reader = openSqliteStore({ file: path.join(h.dir, 'postseal.db'), keyPrefix: 'postseal:', busyTimeoutMs: 1000 });
    try {
      const c = await TestClient.connect(h.app.portOf('default'));
      const r = await c.send({ from: 'a@example.org', to: ['b@example.net'], data: 'From: a@example.org\r\nTo: b@example.net\r\nSubject: s\r\n\r\nbody\r\n' });
      await c.quit();
      expect(r.final).toMatchObject({ code: 250 });
      expect(await reader.scan('dmarc')).toEqual([]);
    } finally {
      await reader.close();
      await h.close();
      await sink.close();
      await dns.close();
    }
  });
});
