/**
 * The failure report service (src/services/dmarc-reports/failure-service.ts): a stop sends what
 * is queued without waiting on a DNS that does not answer.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import YAML from 'yaml';
import { parseDmarcRecord } from '../../../src/lib/dmarc-report/policy';
import type { FailureSample } from '../../../src/lib/dmarc-report/failure';
import { createDnsResolver } from '../../../src/lib/dns';
import { DmarcFailureReportsService } from '../../../src/services/dmarc-reports/failure-service';
import type { FailureOutcome } from '../../../src/services/dmarc-reports/failures';
import { loadConfig } from '../../../src/setup';
import { openSqliteStore } from '../../../src/store/sqlite';
import { startDnsServer, type DnsServer } from '../../helpers/dns-server';
import { startSink, type Sink } from '../../helpers/sink';

const log = pino({ level: 'silent' });
let dns: DnsServer;
let sink: Sink;

beforeAll(async () => {
  dns = await startDnsServer({
    // Authorizations of the outside ruf domains are never answered.
    'slow1.test._report._dmarc.never1.test': { behaviour: 'timeout' },
    'slow2.test._report._dmarc.never2.test': { behaviour: 'timeout' },
  });
  sink = await startSink();
});
afterAll(async () => {
  await sink.close();
  await dns.close();
});

function config() {
  const dir = mkdtempSync(path.join(tmpdir(), 'dmarc-ruf-service-'));
  mkdirSync(path.join(dir, 'banks'));
  const bank = YAML.parse(readFileSync(path.join(__dirname, '../../../policy-banks/default.yaml'), 'utf8'));
  bank.notify = { protocol: 'smtp', host: '127.0.0.1', port: sink.port };
  writeFileSync(path.join(dir, 'banks', 'default.yaml'), YAML.stringify(bank));
  const main = { bankDir: 'banks', listeners: [{ port: 0, bank: 'default' }], hostname: 'mx.receiver.test', services: { dmarcReports: { failureReports: { enabled: true } } } };
  writeFileSync(path.join(dir, 'postseal.yaml'), YAML.stringify(main));
  return loadConfig(path.join(dir, 'postseal.yaml'));
}

function sample(domain: string, ruf: string): FailureSample {
  return {
    receivedAt: new Date('2026-12-07T06:00:00Z'),
    sourceIp: '198.51.100.7',
    mailFrom: 'x@evil.test',
    headerFrom: domain,
    policy: parseDmarcRecord(domain, `v=DMARC1; p=none; fo=1; ruf=${ruf}`)!,
    authFailure: 'dmarc',
    facts: { dkimAligned: false, spfAligned: false, dkim: [] },
    authResults: 'filter.test; dmarc=fail',
    disposition: 'none',
    headers: Buffer.from(`From: <a@${domain}>\r\n\r\n`),
  };
}

test('a stop sends the queued reports to the domains own addresses and does not wait on DNS for the others', async () => {
  const store = openSqliteStore({ file: path.join(mkdtempSync(path.join(tmpdir(), 'dmarc-ruf-service-db-')), 's.db'), keyPrefix: 'p:', busyTimeoutMs: 1000 });
  // Long enough that waiting for the lookups would outlast the test's time.
  const resolver = createDnsResolver({ servers: [dns.server], timeoutMs: 20000, retries: 0, cacheMaxEntries: 0, cacheMaxTtlSec: 0 });
  const outcomes: FailureOutcome[] = [];
  const service = new DmarcFailureReportsService(config(), { store, resolver, log, now: () => new Date('2026-12-07T06:00:00Z'), onOutcome: (o) => outcomes.push(o) });
  service.offer(sample('slow1.test', 'mailto:ruf@never1.test'));
  service.offer(sample('slow2.test', 'mailto:ruf@never2.test'));
  service.offer(sample('own.test', 'mailto:ruf@own.test'));
  while (!dns.queries.some((q) => q.name === 'slow1.test._report._dmarc.never1.test')) await new Promise((resolve) => setTimeout(resolve, 5));
  await service.close();
  expect(outcomes.map((o) => `${o.policyDomain} ${o.status}`)).toEqual(['slow1.test dns-temperror', 'slow2.test dns-temperror', 'own.test sent']);
  expect(dns.queries.map((q) => q.name)).not.toContain('slow2.test._report._dmarc.never2.test');
  expect(sink.received.map((m) => m.recipients.map((r) => r.address))).toEqual([['ruf@own.test']]);
  await store.close();
});
