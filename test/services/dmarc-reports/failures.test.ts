/**
 * DMARC failure reports (src/services/dmarc-reports/failures.ts) from the real spf and dmarc
 * stages, over a real SMTP sink: who gets them (RFC 7489 7.1), fo=, no loops, the limits
 * shared through sqlite and Redis, the queue bound, the message path never waiting, and the
 * report's DKIM signature checked by Mail::DKIM and dkimpy.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { simpleParser } from 'mailparser';
import pino from 'pino';
import type { DmarcFailureSink, FailureSample } from '../../../src/lib/dmarc-report/failure';
import { parseDmarcRecord } from '../../../src/lib/dmarc-report/policy';
import { createDnsResolver, type DnsResolver } from '../../../src/lib/dns';
import { DownstreamPool } from '../../../src/reinject/pool';
import { FailureReporter, type FailureDeps, type FailureOutcome, type FailureSettings } from '../../../src/services/dmarc-reports/failures';
import { poolSender } from '../../../src/notify/send';
import { reportSigner } from '../../../src/notify/sign';
import { dmarcStage } from '../../../src/stages/dmarc';
import { spfStage } from '../../../src/stages/spf';
import { openRedisStore } from '../../../src/store/redis';
import { openSqliteStore } from '../../../src/store/sqlite';
import type { Store } from '../../../src/store/store';
import { dkimpy, mailDkim, rsaKey, zoneFor } from '../../helpers/dkim-verifiers';
import { startDnsServer, type DnsServer } from '../../helpers/dns-server';
import { startRedisServer } from '../../helpers/redis-server';
import { sinkTarget, startSink, type Sink } from '../../helpers/sink';
import { countingResolver, rsaSigningKey } from './fixtures';
import { runStage, testStageDeps, testTransaction } from '../../helpers/stage-run';

const dir = mkdtempSync(path.join(tmpdir(), 'dmarc-ruf-'));
const silent = pino({ level: 'silent' });
const settings: FailureSettings = {
  from: 'dmarc-reports@receiver.test',
  submitter: 'receiver.test',
  maxPerDomainPerHour: 10,
  maxPerHour: 100,
  maxQueued: 100,
  redactLocalParts: true,
  maxHeaderBytes: 65536,
};
const now = () => new Date('2026-12-07T06:30:00Z');

let dns: DnsServer;
let resolver: DnsResolver;
let sink: Sink;
let pool: DownstreamPool;
let store: Store;

beforeAll(async () => {
  dns = await startDnsServer({
    ...zoneFor([rsaKey]),
    'a.test': { TXT: ['v=spf1 ip4:192.0.2.25 -all'] },
    '_dmarc.a.test': { TXT: ['v=DMARC1; p=reject; fo=1; ruf=mailto:ruf@a.test,mailto:forensic@reports.test,mailto:x@thirdparty.test'] },
    'a.test._report._dmarc.reports.test': { TXT: ['v=DMARC1'] },
    'b.test': { TXT: ['v=spf1 -all'] },
    '_dmarc.b.test': { TXT: ['v=DMARC1; p=none; ruf=mailto:ruf@thirdparty.test'] },
    'c.test': { TXT: ['v=spf1 ip4:192.0.2.25 -all'] },
    '_dmarc.c.test': { TXT: ['v=DMARC1; p=quarantine; ruf=mailto:ruf@c.test'] },
    'evil.test': { TXT: ['v=spf1 -all'] },
    // victim.test takes reports about anyone (as a careless reporting service might).
    ...Object.fromEntries(
      [...Array.from({ length: 40 }, (_, i) => `n${i}.attacker.example.com`), ...Array.from({ length: 6 }, (_, i) => `attacker${i}.test`)].map((d) => [
        `${d}._report._dmarc.victim.test`,
        { TXT: ['v=DMARC1'] },
      ]),
    ),
  });
  resolver = createDnsResolver({ servers: [dns.server], timeoutMs: 2000, retries: 0, cacheMaxEntries: 0, cacheMaxTtlSec: 0 });
  sink = await startSink();
  pool = new DownstreamPool(sinkTarget(sink.port, { timeoutMs: 1000 }), 'receiver.test', silent);
});
afterAll(async () => {
  await pool.close();
  await sink.close();
  await dns.close();
});
beforeEach(() => {
  store = openSqliteStore({ file: path.join(dir, 'ruf.db'), keyPrefix: `f${Date.now()}${Math.random()}:`, busyTimeoutMs: 1000 });
  sink.received.length = 0;
  sink.behaviour = {};
});
afterEach(() => store.close());

function reporter(over: Partial<FailureSettings> = {}, deps: Partial<FailureDeps> = {}) {
  const outcomes: FailureOutcome[] = [];
  const warnings: string[] = [];
  const log = { info: () => undefined, warn: (_o: object, msg: string) => void warnings.push(msg) };
  const r = new FailureReporter({ store, resolver, send: poolSender(pool), log, now, ...deps }, { ...settings, ...over }, (o) => outcomes.push(o));
  return { r, outcomes, warnings };
}

const message = (from: string, extra = '') =>
  `Received: from mx.sender.test by mx.receiver.test for <carol@receiver.test>; Mon, 7 Dec 2026 05:00:00 +0000\r\nFrom: <${from}>\r\nTo: <carol@receiver.test>\r\nSubject: invoice\r\nMessage-ID: <m1@sender.test>\r\n${extra}\r\nsecret body\r\n`;

/** Runs spf then dmarc on a message as Postfix would hand it over, with `sink` for failure reports. */
async function filter(sinkOf: DmarcFailureSink, data: string, mailFrom: string, addr: string) {
  const deps = { ...testStageDeps(dns, { timeoutMs: 2000 }), dmarcFailures: sinkOf };
  const tx = testTransaction(data, { mailFrom, client: { addr, helo: 'mx.sender.test' } });
  const spf = await runStage(spfStage, tx, deps);
  return runStage(dmarcStage, tx, deps, {}, spf.results);
}

function sample(domain: string, record: string): FailureSample {
  return {
    receivedAt: now(),
    sourceIp: '198.51.100.7',
    mailFrom: 'x@evil.test',
    headerFrom: domain,
    policy: parseDmarcRecord(domain, record)!,
    authFailure: 'dmarc',
    facts: { dkimAligned: false, spfAligned: false, dkim: [], spf: { domain: 'evil.test', result: 'fail' } },
    authResults: 'filter.test; dmarc=fail',
    disposition: 'none',
    headers: Buffer.from(`From: <a@${domain}>\r\n\r\n`),
  };
}

describe('DMARC failure reports', () => {
  test('a DMARC failure is reported to the authorized ruf addresses with the AFRF fields and the header section only', async () => {
    const { r, outcomes } = reporter();
    const { outcome } = await filter(r, message('alice@a.test'), 'mallory@evil.test', '198.51.100.7');
    expect(outcome.findings).toEqual([{ code: 'DMARC_FAIL_REJECT', detail: 'a.test p=reject' }]);
    await r.idle();
    expect(outcomes).toEqual([{ policyDomain: 'a.test', status: 'sent', to: ['ruf@a.test', 'forensic@reports.test'] }]);
    expect(sink.received).toHaveLength(1);
    const got = sink.received[0];
    expect(got.mailFrom).toBe('dmarc-reports@receiver.test');
    expect(got.recipients.map((x) => x.address)).toEqual(['ruf@a.test', 'forensic@reports.test']);
    const mail = await simpleParser(got.data);
    expect(mail.headers.get('content-type')).toMatchObject({ value: 'multipart/report', params: { 'report-type': 'feedback-report' } });
    const [feedback, headers] = mail.attachments;
    const fields = Object.fromEntries(
      feedback.content
        .toString()
        .replace(/\r\n[ \t]+/g, ' ')
        .split('\r\n')
        .filter(Boolean)
        .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]),
    );
    expect(fields).toEqual({
      'Feedback-Type': 'auth-failure',
      'User-Agent': 'postseal',
      Version: '1',
      'Original-Mail-From': '<redacted@evil.test>',
      'Arrival-Date': expect.stringMatching(/^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000$/),
      'Source-IP': '198.51.100.7',
      'Reported-Domain': 'a.test',
      // With redactLocalParts the envelope sender's local part goes too (a VERP sender names a recipient).
      'Authentication-Results': expect.stringMatching(/^filter\.test; spf=fail .*smtp\.mailfrom=redacted@evil\.test.*; dmarc=fail .*header\.from=a\.test policy\.dmarc=reject$/),
      'Auth-Failure': 'dmarc',
      'Identity-Alignment': 'none',
      'Delivery-Result': 'reject',
      'SPF-DNS': 'txt : evil.test : v=spf1 -all',
    });
    const copied = headers.content.toString();
    expect(headers.contentType).toBe('text/rfc822-headers');
    expect(copied).toContain('From: <alice@a.test>\r\n');
    expect(copied).toContain('To: <redacted@receiver.test>\r\n');
    expect(copied).toContain('for <redacted@receiver.test>;');
    expect(copied).not.toContain('carol');
    expect(got.data.toString()).not.toContain('secret body');
  });

  test('fo=1 reports a message that passed DMARC with only SPF aligned; the default fo=0 does not', async () => {
    const { r, outcomes } = reporter();
    await filter(r, message('alice@a.test'), 'alice@a.test', '192.0.2.25');
    await filter(r, message('alice@c.test'), 'alice@c.test', '192.0.2.25');
    await r.idle();
    expect(outcomes.map((o) => [o.policyDomain, o.status])).toEqual([['a.test', 'sent']]);
    const text = sink.received[0].data.toString();
    expect(text).toContain('Identity-Alignment: spf\r\n');
    expect(text).toContain('Delivery-Result: delivered\r\n');
  });

  test('a message Postfix delivers again (a later stage tempfailed it) is reported once; another message is reported', async () => {
    const { r, outcomes } = reporter();
    const deps = { ...testStageDeps(dns, { timeoutMs: 2000 }), dmarcFailures: r };
    const attempt = (queueId: string) => ({
      ...testTransaction(message('alice@a.test'), { mailFrom: 'mallory@evil.test', client: { addr: '198.51.100.7', helo: 'mx.sender.test' } }),
      queueId,
    });
    for (const queueId of ['4ABCD12345', '4ABCD12345', '4ABCD12345', '5EF0123456']) {
      const tx = attempt(queueId);
      const spf = await runStage(spfStage, tx, deps);
      await runStage(dmarcStage, tx, deps, {}, spf.results);
    }
    await r.idle();
    expect(outcomes.map((o) => o.status)).toEqual(['sent', 'already-reported', 'already-reported', 'sent']);
    expect(sink.received).toHaveLength(2);
  });

  test('a message whose report did not go out (downstream refused it, a DNS failure, a stop) is reported at its next delivery attempt', async () => {
    const { r, outcomes } = reporter();
    const once = { ...sample('c.test', 'v=DMARC1; p=none; ruf=mailto:ruf@c.test'), once: 'retry-id-of-one-message' };
    sink.behaviour = { fail: { mail: [451, '4.3.0 try later'] } };
    r.offer(once);
    await r.idle();
    sink.behaviour = {};
    r.offer(once);
    r.offer(once);
    await r.idle();
    expect(outcomes.map((o) => o.status)).toEqual(['send-failed', 'sent', 'already-reported']);
    expect(sink.received).toHaveLength(1);
  });

  test('a DMARC failure under p=quarantine is reported as delivered to spam when the bank quarantines', async () => {
    const { r } = reporter();
    const deps = { ...testStageDeps(dns, { timeoutMs: 2000 }), dmarcFailures: r };
    const tx = testTransaction(message('bob@c.test'), { mailFrom: 'bob@evil.test', client: { addr: '198.51.100.7', helo: 'x' } });
    const spf = await runStage(spfStage, tx, deps);
    await runStage(dmarcStage, tx, deps, { dmarc: { onQuarantine: 'quarantine' } }, spf.results);
    await r.idle();
    expect(sink.received[0].data.toString()).toContain('Delivery-Result: spam\r\n');
  });

  test('a message that is itself a report (multipart/report) is never reported on', async () => {
    const offered: FailureSample[] = [];
    const spy = { offer: (s: FailureSample) => void offered.push(s) };
    const report = message('dmarc-reports@a.test', 'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary="b"\r\n');
    await filter(spy, report, 'dmarc-reports@evil.test', '198.51.100.7');
    expect(offered).toEqual([]);
    await filter(spy, message('alice@a.test'), 'dmarc-reports@evil.test', '198.51.100.7');
    expect(offered).toHaveLength(1);
  });

  test('a third-party ruf address that did not authorize reports gets nothing', async () => {
    const { r, outcomes } = reporter();
    await filter(r, message('bob@b.test'), 'bob@b.test', '198.51.100.7');
    await r.idle();
    expect(outcomes).toEqual([{ policyDomain: 'b.test', status: 'no-destination', to: [], reason: 'not authorized: ruf@thirdparty.test' }]);
    expect(sink.received).toHaveLength(0);
  });

  test('the message path does not wait for a report: the stage returns while the report mail is stalled', async () => {
    sink.behaviour = { stall: 'mail' };
    const { r, outcomes } = reporter();
    const started = Date.now();
    await filter(r, message('alice@a.test'), 'mallory@evil.test', '198.51.100.7');
    expect(Date.now() - started).toBeLessThan(500);
    expect(outcomes).toEqual([]);
    await r.idle();
    expect(outcomes).toEqual([expect.objectContaining({ status: 'send-failed' })]);
  });

  test('a full queue drops further reports with one log line', async () => {
    const { r, outcomes, warnings } = reporter({ maxQueued: 2 });
    for (let i = 0; i < 5; i++) r.offer(sample('c.test', 'v=DMARC1; p=none; ruf=mailto:ruf@c.test'));
    await r.idle();
    expect(outcomes.map((o) => o.status)).toEqual(['sent', 'sent']);
    expect(warnings.filter((w) => w.includes('queue is full'))).toHaveLength(1);
  });

  test('a store that is down drops the report; the next one is sent', async () => {
    const { r, outcomes } = reporter();
    const broken = Object.create(store) as Store;
    broken.increment = async () => {
      throw new Error('store unreachable');
    };
    r.update({ store: broken, resolver, send: poolSender(pool), log: silent, now }, settings);
    r.offer(sample('c.test', 'v=DMARC1; p=none; ruf=mailto:ruf@c.test'));
    await r.idle();
    r.update({ store, resolver, send: poolSender(pool), log: silent, now }, settings);
    r.offer(sample('c.test', 'v=DMARC1; p=none; ruf=mailto:ruf@c.test'));
    await r.idle();
    expect(outcomes.map((o) => [o.status, o.reason])).toEqual([
      ['send-failed', 'error: store unreachable'],
      ['sent', undefined],
    ]);
  });

  test('a signed failure report verifies with Mail::DKIM and dkimpy', async () => {
    const key = rsaSigningKey();
    const { r } = reporter({ from: 'dmarc-reports@example.com' }, { sign: reportSigner([key], () => new Date()) });
    await filter(r, message('alice@a.test'), 'mallory@evil.test', '198.51.100.7');
    await r.idle();
    const data = sink.received[0].data;
    expect(data.toString('latin1')).toMatch(/^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=example\.com;/);
    const [perl, py] = await Promise.all([mailDkim(data, dns.server), dkimpy(data, dns.server)]);
    expect(perl.map((x) => x.result)).toEqual(['pass']);
    expect(py.map((x) => x.result)).toEqual(['pass']);
  });
});

describe('failure report limits against one attacker', () => {
  const ruf = 'ruf=mailto:abuse@victim.test,mailto:a@v1.test,mailto:a@v2.test,mailto:a@v3.test,mailto:a@v4.test';

  test("an attacker's subdomains share their organizational domain's limit, and a sample over it costs no DNS lookup", async () => {
    const { r, outcomes } = reporter({ maxPerDomainPerHour: 1 });
    for (let i = 0; i < 40; i++) r.offer(sample(`n${i}.attacker.example.com`, `v=DMARC1; p=none; fo=1; ${ruf}`));
    await r.idle();
    expect(outcomes.filter((o) => o.status === 'sent')).toHaveLength(1);
    expect(sink.received).toHaveLength(1);
    const before = dns.queries.length;
    for (let i = 0; i < 10; i++) r.offer(sample('n0.attacker.example.com', `v=DMARC1; p=none; fo=1; ${ruf}`));
    await r.idle();
    expect(outcomes.slice(-10).map((o) => o.status)).toEqual(Array(10).fill('domain-limit'));
    expect(dns.queries.length).toBe(before);
  });

  test('one destination gets at most maxPerDomainPerHour reports an hour from all policy domains together, and its authorization is looked up once', async () => {
    const { r, outcomes } = reporter({ maxPerDomainPerHour: 2 });
    const before = dns.queries.filter((q) => q.name.endsWith('._report._dmarc.victim.test')).length;
    for (let i = 0; i < 6; i++) r.offer(sample(`attacker${i}.test`, 'v=DMARC1; p=none; fo=1; ruf=mailto:abuse@victim.test'));
    for (let i = 0; i < 6; i++) r.offer(sample('attacker0.test', 'v=DMARC1; p=none; fo=1; ruf=mailto:abuse@victim.test'));
    await r.idle();
    expect(outcomes.filter((o) => o.status === 'sent')).toHaveLength(2);
    expect(outcomes.filter((o) => o.status === 'destination-limit').length).toBeGreaterThan(0);
    const lookups = dns.queries.filter((q) => q.name.endsWith('._report._dmarc.victim.test')).length - before;
    // One per policy domain that got past its own limit, cached after.
    expect(lookups).toBeLessThanOrEqual(6);
  });

  test("a record's ruf domains whose authorization never answers are looked up at once, not one after another", async () => {
    for (const d of ['slow1', 'slow2', 'slow3']) dns.zone[`slowruf.test._report._dmarc.${d}.test`] = { behaviour: 'timeout' };
    const quick = createDnsResolver({ servers: [dns.server], timeoutMs: 300, retries: 0, cacheMaxEntries: 0, cacheMaxTtlSec: 0 });
    const { resolver: counting, most } = countingResolver(quick);
    const { r, outcomes } = reporter({}, { resolver: counting });
    r.offer(sample('slowruf.test', 'v=DMARC1; p=none; fo=1; ruf=mailto:a@slow1.test,mailto:a@slow2.test,mailto:a@slow3.test'));
    await r.idle();
    expect(outcomes).toEqual([{ policyDomain: 'slowruf.test', status: 'dns-temperror', to: [], reason: 'authorization of slow1.test, slow2.test, slow3.test' }]);
    expect(most()).toBe(3);
  });
});

describe('failure report limits shared through the store', () => {
  async function twoProcesses(open: () => Promise<Store>): Promise<void> {
    const stores = [await open(), await open()];
    const outcomes: FailureOutcome[] = [];
    const limits = { ...settings, maxPerDomainPerHour: 2, maxPerHour: 3 };
    const reporters = stores.map((s) => new FailureReporter({ store: s, resolver, send: poolSender(pool), log: silent, now }, limits, (o) => outcomes.push(o)));
    try {
      // Each process sees two failures of a.test: four, of which the domain's hourly limit lets two through.
      for (const r of reporters) for (let i = 0; i < 2; i++) r.offer(sample('c.test', 'v=DMARC1; p=none; ruf=mailto:ruf@c.test'));
      await Promise.all(reporters.map((r) => r.idle()));
      // Then one failure of another domain each: the third report of the hour is the last of all domains.
      for (const r of reporters) r.offer(sample('a.test', 'v=DMARC1; p=reject; ruf=mailto:ruf@a.test'));
      await Promise.all(reporters.map((r) => r.idle()));
      expect(outcomes.map((o) => `${o.policyDomain} ${o.status}`).sort()).toEqual([
        'a.test global-limit',
        'a.test sent',
        'c.test domain-limit',
        'c.test domain-limit',
        'c.test sent',
        'c.test sent',
      ]);
      expect(sink.received).toHaveLength(3);
      // The next hour starts afresh.
      const later = new FailureReporter({ store: stores[0], resolver, send: poolSender(pool), log: silent, now: () => new Date(now().getTime() + 3600_000) }, limits, (o) =>
        outcomes.push(o),
      );
      later.offer(sample('c.test', 'v=DMARC1; p=none; ruf=mailto:ruf@c.test'));
      await later.idle();
      expect(outcomes.at(-1)).toMatchObject({ status: 'sent' });
    } finally {
      for (const s of stores) await s.close();
    }
  }

  test('two processes on one sqlite file share the per-domain and global hourly limits', async () => {
    const prefix = `lim${Date.now()}:`;
    await twoProcesses(async () => openSqliteStore({ file: path.join(dir, 'shared.db'), keyPrefix: prefix, busyTimeoutMs: 2000 }));
  });

  test('two hosts on one Redis share the per-domain and global hourly limits', async () => {
    const redis = await startRedisServer();
    try {
      await twoProcesses(() => openRedisStore({ url: redis.url, keyPrefix: 'ruf:', timeoutMs: 2000, log: silent }));
    } finally {
      await redis.stop();
    }
  });
});
