import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { runReports, type RunDeps } from '../../../src/services/dmarc-reports/run';
import { StoredDmarcResults } from '../../../src/store/dmarc-results';
import { openSqliteStore } from '../../../src/store/sqlite';
import type { Store } from '../../../src/store/store';
import type { DnsServer } from '../../helpers/dns-server';
import { dkimpy, edKey, mailDkim, rsaKey, zoneFor } from '../../helpers/dkim-verifiers';
import { reportSigner } from '../../../src/notify/sign';
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Sink } from '../../helpers/sink';
import { rec, REPORT_SETTINGS, rsaSigningKey, reportWorld } from './fixtures';

const dir = mkdtempSync(path.join(tmpdir(), 'dmarc-run-'));
const cfg = REPORT_SETTINGS;
const now = () => new Date('2026-12-07T06:00:00Z');

let dns: DnsServer;
let sink: Sink;
let store: Store;
let results: StoredDmarcResults;
let deps: RunDeps;

/** The XML of the report in a report mail. */
function xmlOf(text: string): string {
  const b64 = /filename="[^"]+\.xml\.gz"\r\n\r\n([A-Za-z0-9+/=\r\n]+?)\r\n--/.exec(text)?.[1];
  return gunzipSync(Buffer.from(b64 ?? '', 'base64')).toString('utf8');
}

reportWorld(
  {
    ...zoneFor([rsaKey]),
    '_dmarc.example.com': { TXT: ['v=DMARC1; p=reject; rua=mailto:agg@example.com'] },
    '_dmarc.a.test': { TXT: ['v=DMARC1; p=reject; rua=mailto:agg@a.test,mailto:agg@reports.test'] },
    'a.test._report._dmarc.reports.test': { TXT: ['v=DMARC1'] },
    '_dmarc.b.test': { TXT: ['v=DMARC1; p=none; rua=mailto:agg@thirdparty.test'] },
    '_dmarc.c.test': { TXT: ['v=DMARC1; p=quarantine; rua=mailto:agg@c.test'] },
    '_dmarc.tiny.test': { TXT: ['v=DMARC1; p=none; rua=mailto:agg@tiny.test!1k'] },
    '_dmarc.small.test': { TXT: ['v=DMARC1; p=none; rua=mailto:agg@small.test!4k'] },
    '_dmarc.d.test': { TXT: ['v=DMARC1; p=none; rua=mailto:agg@d.test'] },
  },
  { timeoutMs: 2000, prefix: 'r', now },
  (s) => ({ dns, sink } = s),
  (s) => ({ store, results, deps } = s),
);

beforeEach(() => {
  sink.behaviour = {};
  dns.zone['_dmarc.c.test'].behaviour = undefined;
});

describe('aggregate report run', () => {
  test('a past day is mailed once to the authorized addresses, then its records are gone', async () => {
    for (let i = 0; i < 3; i++) await results.record(rec('a.test'));
    await results.record(rec('a.test', { sourceIp: '198.51.100.9', result: 'fail', disposition: 'reject', dkim: [], spf: { domain: 'x.test', result: 'fail' } }));
    const out = await runReports(deps, cfg);
    expect(out).toEqual([expect.objectContaining({ policyDomain: 'a.test', period: '2026-12-06', status: 'sent', messages: 4, to: ['agg@a.test', 'agg@reports.test'] })]);
    expect(sink.received).toHaveLength(1);
    const mail = sink.received[0];
    expect(mail.mailFrom).toBe('dmarc-reports@receiver.test');
    expect(mail.recipients.map((r) => r.address)).toEqual(['agg@a.test', 'agg@reports.test']);
    const text = mail.data.toString('utf8');
    expect(text).toMatch(/^Subject: Report Domain: a\.test Submitter: receiver\.test Report-ID: <a\.test\.2026-12-06\.[0-9a-f]{16}>\r$/m);
    expect(text).toContain('Content-Type: multipart/report; report-type="dmarc-aggregate"');
    const b64 = /filename="receiver\.test!a\.test!1796515200!1796601599\.xml\.gz"\r\n\r\n([A-Za-z0-9+/=\r\n]+?)\r\n--/.exec(text)?.[1];
    const xml = gunzipSync(Buffer.from(b64 ?? '', 'base64')).toString('utf8');
    const counts = [...xml.matchAll(/<count>(\d+)<\/count>/g)].map((m) => Number(m[1]));
    expect(counts.reduce((a, b) => a + b, 0)).toBe(4);
    expect(await results.periods()).toEqual([]);
    expect(await runReports(deps, cfg)).toEqual([]);
  });

  test('a period is reported only graceSec after its end, so a message received just before the end is in its report', async () => {
    await results.record(rec('a.test', { receivedAt: new Date('2026-12-06T23:59:58Z') }));
    const at = (t: string) => ({ ...deps, now: () => new Date(t) });
    expect(await runReports(at('2026-12-07T00:05:00Z'), { ...cfg, graceSec: 600 })).toEqual([]);
    await results.record(rec('a.test', { receivedAt: new Date('2026-12-06T23:59:59Z'), sourceIp: '198.51.100.7' }));
    expect(await runReports(at('2026-12-07T00:10:01Z'), { ...cfg, graceSec: 600 })).toEqual([expect.objectContaining({ status: 'sent', messages: 2 })]);
  });

  test('a second report of a period (records that came after the first) has its own Report-ID; the same report sent again keeps its', async () => {
    const ids = () => sink.received.map((m) => /Report-ID: <([^>]+)>/.exec(m.data.toString('utf8'))?.[1]);
    await results.record(rec('c.test'));
    sink.behaviour = { fail: { data: [451, '4.3.0 try later'] } };
    const [refused] = await runReports(deps, cfg);
    expect(refused).toMatchObject({ status: 'send-failed' });
    sink.behaviour = {};
    await store.delete('dmarc-report-wait:c.test:2026-12-06');
    const [resent] = await runReports(deps, cfg);
    expect(resent).toMatchObject({ status: 'sent' });
    const firstId = ids()[0];
    // The refused try built the same report: same digest, same Report-ID.
    expect(firstId).toMatch(/^c\.test\.2026-12-06\.[0-9a-f]{16}$/);
    expect(refused.report?.xml).toContain(`<report_id>${firstId}</report_id>`);
    await results.record(rec('c.test', { sourceIp: '198.51.100.7', result: 'fail', disposition: 'quarantine' }));
    expect((await runReports(deps, cfg))[0]).toMatchObject({ status: 'sent', messages: 1 });
    expect(ids()).toHaveLength(2);
    expect(ids()[1]).not.toBe(firstId);
  });

  test('the Report-ID is the same for the same report content and differs for another', async () => {
    await results.record(rec('a.test'));
    const dry = async () => (await runReports(deps, cfg, { dryRun: true }))[0].report?.xml.match(/<report_id>([^<]+)</)?.[1];
    const one = await dry();
    expect(await dry()).toBe(one);
    await results.record(rec('a.test', { sourceIp: '198.51.100.7' }));
    expect(await dry()).not.toBe(one);
  });

  test('two hosts with stores of their own whose rows are equal send two reports with different Report-IDs', async () => {
    const other = openSqliteStore({ file: path.join(dir, 'other-host.db'), keyPrefix: `o${Date.now()}${Math.random()}:`, busyTimeoutMs: 1000 });
    try {
      const otherResults = new StoredDmarcResults(other);
      // One message each, from the same source with the same results: the same rows.
      await results.record(rec('a.test'));
      await otherResults.record(rec('a.test'));
      const id = async (d: RunDeps) => (await runReports(d, cfg, { dryRun: true }))[0].report?.xml.match(/<report_id>([^<]+)</)?.[1];
      const here = await id(deps);
      expect(here).toMatch(/^a\.test\.2026-12-06\.[0-9a-f]{16}$/);
      expect(await id({ ...deps, store: other, results: otherResults })).not.toBe(here);
      // Another process on the first store builds the same report with the same Report-ID.
      expect(await id({ ...deps, owner: 'another-process' })).toBe(here);
    } finally {
      await other.close();
    }
  });

  test('a period whose DNS keeps failing is given up after maxAttempts tries and its records dropped', async () => {
    await results.record(rec('c.test'));
    dns.zone['_dmarc.c.test'].behaviour = 'servfail';
    const statuses: string[] = [];
    for (let i = 0; i < 3; i++) {
      await store.delete('dmarc-report-wait:c.test:2026-12-06');
      statuses.push(...(await runReports(deps, { ...cfg, maxAttempts: 3 })).map((o) => o.status));
    }
    expect(statuses).toEqual(['dns-temperror', 'dns-temperror', 'given-up']);
    expect((await results.peek('c.test', '2026-12-06')).messages).toBe(0);
    expect(await results.periods()).toEqual([]);
  });

  test("policy_evaluated carries the dmarc stage's alignment, not one judged again from the stored domains", async () => {
    // DKIM d=a.test passed for From sub.a.test whose own record applied: the stage aligned it
    // (relaxed, same organizational domain); and a t=y pass the stage did not trust.
    await results.record(
      rec('a.test', {
        headerFrom: 'sub.a.test',
        dkim: [{ domain: 'other.a.test', selector: 's', result: 'pass' }],
        spf: { domain: 'x.test', result: 'pass' },
        dkimAligned: true,
        spfAligned: false,
      }),
    );
    await results.record(rec('a.test', { sourceIp: '192.0.2.2', dkimAligned: false, spfAligned: false, result: 'fail' }));
    const [o] = await runReports(deps, cfg, { dryRun: true });
    const rows = [...(o.report?.xml ?? '').matchAll(/<source_ip>([^<]+)<\/source_ip>[\s\S]*?<dkim>(\w+)<\/dkim><spf>(\w+)<\/spf>/g)].map((m) => m.slice(1).join(' '));
    expect(rows.sort()).toEqual(['192.0.2.1 pass fail', '192.0.2.2 fail fail']);
  });

  test('messages of rows past the per-period row cap are counted and the report says so', async () => {
    const capped = new StoredDmarcResults(store, { maxPerPeriod: 2 });
    for (let i = 0; i < 5; i++) await capped.record(rec('a.test', { sourceIp: `192.0.2.${i + 1}` }));
    const [o] = await runReports({ ...deps, results: capped }, cfg);
    expect(o).toMatchObject({ status: 'sent', messages: 5 });
    const xml = xmlOf(sink.received[0].data.toString('utf8'));
    expect(xml).toContain('<error>3 messages of this period were counted but not stored');
    expect(await capped.peek('a.test', '2026-12-06')).toMatchObject({ messages: 0, over: 0 });
  });

  test('one destination domain gets at most maxReportsPerDestinationPerDay report mails a day, whatever the policy domains', async () => {
    // a.test and reports.test: a.test reports to both; d.test has its own address.
    for (const d of ['a.test', 'd.test']) await results.record(rec(d));
    await results.record(rec('a.test', { receivedAt: new Date('2026-12-05T12:00:00Z') }));
    const out = await runReports(deps, { ...cfg, maxReportsPerDestinationPerDay: 1 });
    expect(out.map((o) => `${o.policyDomain} ${o.period} ${o.status} ${o.to.join(',')}`)).toEqual([
      'a.test 2026-12-05 sent agg@a.test,agg@reports.test',
      'a.test 2026-12-06 destination-limit agg@a.test,agg@reports.test',
      'd.test 2026-12-06 sent agg@d.test',
    ]);
  });

  test("today's records wait until the day is over", async () => {
    await results.record(rec('a.test', { receivedAt: new Date('2026-12-07T01:00:00Z') }));
    expect(await runReports(deps, cfg)).toEqual([]);
    expect(await results.periods()).toHaveLength(1);
  });

  test('a downstream refusal keeps the records and backs off; the next try after the wait sends them', async () => {
    await results.record(rec('c.test'));
    sink.behaviour = { fail: { data: [451, '4.3.0 try later'] } };
    const [first] = await runReports(deps, cfg);
    expect(first).toMatchObject({ status: 'send-failed' });
    expect((await results.peek('c.test', '2026-12-06')).records).toHaveLength(1);
    sink.behaviour = {};
    expect((await runReports(deps, cfg))[0]).toMatchObject({ status: 'waiting' });
    await store.delete('dmarc-report-wait:c.test:2026-12-06');
    expect((await runReports(deps, cfg))[0]).toMatchObject({ status: 'sent', messages: 1 });
    expect(sink.received).toHaveLength(1);
  });

  test('a DNS failure of the policy lookup keeps the records for a later try', async () => {
    await results.record(rec('c.test'));
    dns.zone['_dmarc.c.test'].behaviour = 'servfail';
    expect((await runReports(deps, cfg))[0]).toMatchObject({ status: 'dns-temperror' });
    expect((await results.peek('c.test', '2026-12-06')).records).toHaveLength(1);
    expect(sink.received).toHaveLength(0);
  });

  test('an unauthorized third-party address gets nothing and the records are dropped', async () => {
    await results.record(rec('b.test'));
    expect((await runReports(deps, cfg))[0]).toMatchObject({ status: 'no-destination', reason: 'not authorized: agg@thirdparty.test' });
    expect(sink.received).toHaveLength(0);
    expect(await results.periods()).toEqual([]);
  });

  test('a report larger than the rua size limit is not sent there', async () => {
    for (let i = 0; i < 40; i++) await results.record(rec('tiny.test', { sourceIp: `192.0.2.${i + 1}` }));
    expect((await runReports(deps, cfg))[0]).toMatchObject({ status: 'too-big', to: ['agg@tiny.test'] });
    expect(sink.received).toHaveLength(0);
  });

  test('a report too big for every rua limit is sent with the rows of the largest counts that fit, and says what it left out', async () => {
    // The domain's own mail: one source, many messages; then forged mail in many distinct rows.
    for (let i = 0; i < 30; i++) await results.record(rec('small.test'));
    for (let i = 0; i < 200; i++)
      await results.record(
        rec('small.test', { sourceIp: `198.51.${i >> 8}.${i & 255}`, result: 'fail', dkim: [{ domain: `f${i}.forged.test`, selector: `s${i * 7919}`, result: 'fail' }] }),
      );
    const [o] = await runReports(deps, cfg);
    expect(o).toMatchObject({ status: 'sent', messages: 230, to: ['agg@small.test'] });
    expect(sink.received[0].data.length).toBeLessThanOrEqual(4 * 1024);
    const xml = xmlOf(sink.received[0].data.toString('utf8'));
    const rows = [...xml.matchAll(/<source_ip>([^<]+)<\/source_ip><count>(\d+)<\/count>/g)].map((m) => `${m[1]} ${m[2]}`);
    expect(rows[0]).toBe('192.0.2.1 30');
    expect(rows.length).toBeGreaterThan(1);
    expect(rows.length).toBeLessThan(201);
    expect(xml).toContain(`<error>${201 - rows.length} rows with ${201 - rows.length} messages left out`);
    expect(await results.periods()).toEqual([]);
  });

  test('a signed report cut to a rua limit fits it with its signature', async () => {
    for (let i = 0; i < 200; i++)
      await results.record(rec('small.test', { sourceIp: `198.51.${i >> 8}.${i & 255}`, dkim: [{ domain: `f${i}.forged.test`, selector: `s${i * 7919}`, result: 'fail' }] }));
    const key = rsaSigningKey();
    const [o] = await runReports({ ...deps, sign: reportSigner([key], () => new Date()) }, { ...cfg, from: 'dmarc-reports@example.com' });
    expect(o).toMatchObject({ status: 'sent' });
    expect(sink.received[0].data.toString('latin1')).toMatch(/^DKIM-Signature: /);
    expect(sink.received[0].data.length).toBeLessThanOrEqual(4 * 1024);
  });

  test('a report signed by two keys (RSA 4096 and Ed25519) fits a rua limit with both signatures', async () => {
    const forged = (i: number) => rec('exact.test', { sourceIp: `198.51.${i >> 8}.${i & 255}`, dkim: [{ domain: `f${i}.forged.test`, selector: `s${i * 7919}`, result: 'fail' }] });
    const record = async () => {
      for (let i = 0; i < 40; i++) await results.record(forged(i));
    };
    // The unsigned report's size, then a limit 1100 octets above it: less than the two signatures take.
    dns.zone['_dmarc.exact.test'] = { TXT: ['v=DMARC1; p=none; rua=mailto:agg@exact.test'] };
    await record();
    await runReports(deps, cfg);
    const unsigned = sink.received[0].data.length;
    const limit = unsigned + 1100;
    dns.zone['_dmarc.exact.test'] = { TXT: [`v=DMARC1; p=none; rua=mailto:agg@exact.test!${limit}`] };
    await record();
    const key = (k: typeof rsaKey) => ({
      domain: k.domain,
      selector: k.selector,
      algorithm: k.algorithm,
      privateKey: createPrivateKey(readFileSync(k.file)),
      domainKeys: 'off' as const,
    });
    const rsa4096 = { ...key(rsaKey), selector: 'rsa4096', privateKey: generateKeyPairSync('rsa', { modulusLength: 4096 }).privateKey };
    const [o] = await runReports({ ...deps, sign: reportSigner([rsa4096, key(edKey)], () => new Date()) }, { ...cfg, from: 'dmarc-reports@example.com' });
    expect(o).toMatchObject({ status: 'sent' });
    expect(sink.received[1].data.toString('latin1').match(/^DKIM-Signature: /gm)).toHaveLength(2);
    expect(sink.received[1].data.length).toBeLessThanOrEqual(limit);
  });

  test('a domain-day locked by another sender is left to it', async () => {
    await results.record(rec('a.test'));
    await store.setIfAbsent('dmarc-report-lock:a.test:2026-12-06', 'other-host', { ttlMs: 60000 });
    expect((await runReports(deps, cfg))[0]).toMatchObject({ status: 'locked' });
    expect(sink.received).toHaveLength(0);
  });

  test('domain-days locked or waiting do not use up maxReportsPerRun', async () => {
    await results.record(rec('a.test'));
    await results.record(rec('b.test'));
    await store.setIfAbsent('dmarc-report-lock:a.test:2026-12-06', 'other-host', { ttlMs: 60000 });
    const outcomes = await runReports(deps, { ...cfg, maxReportsPerRun: 1 });
    expect(outcomes.map((o) => [o.policyDomain, o.status])).toEqual([
      ['a.test', 'locked'],
      ['b.test', 'no-destination'], // attempted: its rua is not authorized (above)
    ]);
  });

  test('a lock another sender took after ours expired is not removed by us', async () => {
    await results.record(rec('a.test'));
    // The send itself replaces our lock, as another worker would once lockTtlMs passed.
    const send: typeof deps.send = async (...args) => {
      await store.delete('dmarc-report-lock:a.test:2026-12-06');
      await store.setIfAbsent('dmarc-report-lock:a.test:2026-12-06', 'other-host', { ttlMs: 60000 });
      return deps.send(...args);
    };
    expect((await runReports({ ...deps, send }, cfg))[0]).toMatchObject({ status: 'sent' });
    expect(await store.get('dmarc-report-lock:a.test:2026-12-06')).toBe('other-host');
  });

  test('a store error on one domain-day is its outcome, and the pass goes on to the next', async () => {
    await results.record(rec('a.test'));
    await results.record(rec('b.test'));
    const failing = Object.create(results) as StoredDmarcResults;
    failing.peek = async (domain, day) => {
      if (domain === 'a.test') throw new Error('store unreachable');
      return results.peek(domain, day);
    };
    const outcomes = await runReports({ ...deps, results: failing }, cfg);
    expect(outcomes.map((o) => [o.policyDomain, o.status, o.reason])).toEqual([
      ['a.test', 'send-failed', 'error: store unreachable'],
      ['b.test', 'no-destination', 'not authorized: agg@thirdparty.test'],
    ]);
    expect(await store.get('dmarc-report-wait:a.test:2026-12-06')).toBe('1');
  });

  test('a report whose records could not be removed after the send is not sent again; later records get a report of their own', async () => {
    await results.record(rec('a.test'));
    await results.record(rec('a.test'));
    const failing = Object.create(results) as StoredDmarcResults;
    failing.remove = async () => {
      throw new Error('store unreachable');
    };
    const [first] = await runReports({ ...deps, results: failing }, cfg);
    expect(first).toMatchObject({ status: 'sent', messages: 2, reason: 'records not removed (store unreachable); the next pass removes them' });
    expect((await results.peek('a.test', '2026-12-06')).messages).toBe(2);
    // A later message of the reported row, and one of a new row.
    await results.record(rec('a.test'));
    await results.record(rec('a.test', { sourceIp: '203.0.113.5' }));
    const [second] = await runReports(deps, cfg);
    expect(second).toMatchObject({ status: 'sent', messages: 2 });
    expect(sink.received).toHaveLength(2);
    const ids = sink.received.map((m) => /Report-ID: <([^>]+)>/.exec(m.data.toString())?.[1]);
    expect(ids[0]).not.toBe(ids[1]);
    expect(await results.periods()).toEqual([]);
    expect(await runReports(deps, cfg)).toEqual([]);
  });

  test('a report sent before whose records were left behind is only cleaned up', async () => {
    await results.record(rec('a.test'));
    const failing = Object.create(results) as StoredDmarcResults;
    failing.remove = async () => {
      throw new Error('store unreachable');
    };
    await runReports({ ...deps, results: failing }, cfg);
    const [again] = await runReports(deps, cfg);
    expect(again).toMatchObject({ status: 'already-sent', messages: 1, reason: expect.stringMatching(/^Report-ID a\.test\.2026-12-06\.[0-9a-f]{16}$/) });
    expect(sink.received).toHaveLength(1);
    expect(await results.periods()).toEqual([]);
  });

  test('a record stored between reading and removing is kept for the next report', async () => {
    await results.record(rec('a.test'));
    const read = await results.peek('a.test', '2026-12-06');
    await results.record(rec('a.test', { sourceIp: '203.0.113.5' }));
    await results.record(rec('a.test'));
    await results.remove('a.test', '2026-12-06', read);
    expect((await results.peek('a.test', '2026-12-06')).records.map((r) => `${r.sourceIp} ${r.count}`)).toEqual(['192.0.2.1 1', '203.0.113.5 1']);
  });

  test('a signed report verifies with Mail::DKIM and dkimpy', async () => {
    await results.record(rec('a.test'));
    const key = rsaSigningKey();
    const [o] = await runReports({ ...deps, sign: reportSigner([key], () => new Date()) }, { ...cfg, from: 'dmarc-reports@example.com' });
    expect(o).toMatchObject({ status: 'sent' });
    const data = sink.received[0].data;
    expect(data.toString('latin1')).toMatch(/^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=example\.com;\r\n s=rsa2048;/);
    const [perl, py] = await Promise.all([mailDkim(data, dns.server), dkimpy(data, dns.server)]);
    expect(perl.map((r) => r.result)).toEqual(['pass']);
    expect(py.map((r) => r.result)).toEqual(['pass']);
  });

  test('a domain with ri=3600 gets one report per finished UTC hour, with the hour as begin and end and its own counts', async () => {
    for (const t of ['2026-12-06T03:10:00Z', '2026-12-06T03:59:59Z']) await results.record(rec('a.test', { receivedAt: new Date(t), requestedIntervalSec: 3600 }));
    await results.record(rec('a.test', { receivedAt: new Date('2026-12-06T04:00:00Z'), requestedIntervalSec: 3600, sourceIp: '198.51.100.7' }));
    const out = await runReports(deps, cfg);
    expect(out.map((o) => [o.period, o.status, o.messages])).toEqual([
      ['2026-12-06T03Z/1h', 'sent', 2],
      ['2026-12-06T04Z/1h', 'sent', 1],
    ]);
    const three = Date.parse('2026-12-06T03:00:00Z') / 1000;
    for (const [i, begin, rows] of [
      [0, three, ['192.0.2.1 2']],
      [1, three + 3600, ['198.51.100.7 1']],
    ] as const) {
      const text = sink.received[i].data.toString('utf8');
      expect(text).toContain(`filename="receiver.test!a.test!${begin}!${begin + 3599}.xml.gz"`);
      expect(text).toMatch(new RegExp(`Report-ID: <a\\.test\\.2026-12-06T0${3 + i}Z\\.1h\\.[0-9a-f]{16}>`));
      const xml = xmlOf(text);
      expect(xml).toContain(`<date_range><begin>${begin}</begin><end>${begin + 3599}</end></date_range>`);
      expect([...xml.matchAll(/<source_ip>([^<]+)<\/source_ip><count>(\d+)<\/count>/g)].map((m) => `${m[1]} ${m[2]}`)).toEqual(rows);
    }
    expect(await results.periods()).toEqual([]);
  });

  test('a finished hour is sent while the rest of its day waits: the current hour and daily periods', async () => {
    await results.record(rec('a.test', { receivedAt: new Date('2026-12-06T03:10:00Z'), requestedIntervalSec: 3600 }));
    await results.record(rec('a.test', { receivedAt: new Date('2026-12-06T04:10:00Z'), requestedIntervalSec: 3600 }));
    await results.record(rec('c.test', { receivedAt: new Date('2026-12-06T01:00:00Z') }));
    const out = await runReports({ ...deps, now: () => new Date('2026-12-06T04:30:00Z') }, cfg);
    expect(out.map((o) => [o.policyDomain, o.period, o.status])).toEqual([['a.test', '2026-12-06T03Z/1h', 'sent']]);
    expect((await results.periods()).map((p) => `${p.policyDomain} ${p.period}`).sort()).toEqual(['a.test 2026-12-06T04Z/1h', 'c.test 2026-12-06']);
    // The hour is over at its last second's end, not before.
    expect(await runReports({ ...deps, now: () => new Date('2026-12-06T04:59:59.999Z') }, cfg)).toEqual([]);
    expect((await runReports({ ...deps, now: () => new Date('2026-12-06T05:00:00Z') }, cfg)).map((o) => o.period)).toEqual(['2026-12-06T04Z/1h']);
  });

  test('ri=86400, an absent ri and ri=100000 give one daily report; ri=60 and ri=5000 hourly ones', async () => {
    for (const [domain, ri] of [
      ['a.test', 86400],
      ['c.test', undefined],
      ['example.com', 100000],
    ] as const) {
      for (const t of ['2026-12-06T01:00:00Z', '2026-12-06T22:00:00Z']) await results.record(rec(domain, { receivedAt: new Date(t), requestedIntervalSec: ri }));
    }
    for (const [t, ri] of [
      ['2026-12-06T01:00:00Z', 60],
      ['2026-12-06T22:00:00Z', 5000],
    ] as const) {
      await results.record(rec('d.test', { receivedAt: new Date(t), requestedIntervalSec: ri }));
    }
    const out = await runReports(deps, cfg, { dryRun: true });
    const day = Date.parse('2026-12-06T00:00:00Z') / 1000;
    expect(out.map((o) => [o.policyDomain, o.period, o.status, o.messages, o.report?.fileName])).toEqual([
      ['a.test', '2026-12-06', 'dry-run', 2, `receiver.test!a.test!${day}!${day + 86399}.xml.gz`],
      ['c.test', '2026-12-06', 'dry-run', 2, `receiver.test!c.test!${day}!${day + 86399}.xml.gz`],
      ['example.com', '2026-12-06', 'dry-run', 2, `receiver.test!example.com!${day}!${day + 86399}.xml.gz`],
      ['d.test', '2026-12-06T01Z/1h', 'dry-run', 1, `receiver.test!d.test!${day + 3600}!${day + 7199}.xml.gz`],
      ['d.test', '2026-12-06T22Z/1h', 'dry-run', 1, `receiver.test!d.test!${day + 22 * 3600}!${day + 22 * 3600 + 3599}.xml.gz`],
    ]);
  });

  test('a changed ri= applies to results stored after the change: stored hours stay hourly, later results go to the day, none is counted twice', async () => {
    // a.test publishes no ri= now (daily); these were stored while it asked for hourly reports.
    await results.record(rec('a.test', { receivedAt: new Date('2026-12-06T09:15:00Z'), requestedIntervalSec: 3600 }));
    await results.record(rec('a.test', { receivedAt: new Date('2026-12-06T09:45:00Z'), requestedIntervalSec: 3600 }));
    await results.record(rec('a.test', { receivedAt: new Date('2026-12-06T10:15:00Z'), requestedIntervalSec: 86400 }));
    const out = await runReports(deps, cfg);
    expect(out.map((o) => [o.period, o.status, o.messages])).toEqual([
      ['2026-12-06', 'sent', 1],
      ['2026-12-06T09Z/1h', 'sent', 2],
    ]);
  });

  test('--since keeps the periods of that UTC day and later', async () => {
    await results.record(rec('a.test', { receivedAt: new Date('2026-12-05T23:00:00Z'), requestedIntervalSec: 3600 }));
    await results.record(rec('a.test', { receivedAt: new Date('2026-12-06T00:00:00Z'), requestedIntervalSec: 3600 }));
    const out = await runReports(deps, cfg, { dryRun: true, since: '2026-12-06' });
    expect(out.map((o) => o.period)).toEqual(['2026-12-06T00Z/1h']);
  });

  test("one hour locked by another sender is left to it, and the day's other hours are sent", async () => {
    await results.record(rec('a.test', { receivedAt: new Date('2026-12-06T03:10:00Z'), requestedIntervalSec: 3600 }));
    await results.record(rec('a.test', { receivedAt: new Date('2026-12-06T04:10:00Z'), requestedIntervalSec: 3600 }));
    await store.setIfAbsent('dmarc-report-lock:a.test:2026-12-06T03Z/1h', 'other-host', { ttlMs: 60000 });
    expect((await runReports(deps, cfg)).map((o) => [o.period, o.status])).toEqual([
      ['2026-12-06T03Z/1h', 'locked'],
      ['2026-12-06T04Z/1h', 'sent'],
    ]);
  });

  test('stored lists whose period is not one of ours are left alone', async () => {
    await store.append('dmarc:a.test:2026-12-06T03Z/5h', JSON.stringify(rec('a.test')));
    expect(await runReports(deps, cfg)).toEqual([]);
  });

  test('a dry run builds the report and leaves the records', async () => {
    await results.record(rec('a.test'));
    const [o] = await runReports(deps, cfg, { dryRun: true });
    expect(o).toMatchObject({ status: 'dry-run', messages: 1 });
    expect(o.report?.fileName).toBe('receiver.test!a.test!1796515200!1796601599.xml.gz');
    expect(sink.received).toHaveLength(0);
    expect(await results.periods()).toHaveLength(1);
  });
});
