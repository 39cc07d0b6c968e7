/**
 * What the DMARC report tests share: the report settings, a stored record, a signing key, a
 * resolver that counts its lookups in flight, and a report pass's world (DNS, sink, store).
 */
import { createPrivateKey } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { createDnsResolver, type DnsResolver } from '../../../src/lib/dns';
import { poolSender } from '../../../src/notify/send';
import { DownstreamPool } from '../../../src/reinject/pool';
import type { RunDeps } from '../../../src/services/dmarc-reports/run';
import { StoredDmarcResults } from '../../../src/store/dmarc-results';
import { openSqliteStore } from '../../../src/store/sqlite';
import type { Store } from '../../../src/store/store';
import { startDnsServer, type DnsServer, type Zone } from '../../helpers/dns-server';
import { sinkTarget, startSink, type Sink } from '../../helpers/sink';
import type { ReportSettings } from '../../../src/services/dmarc-reports';
import type { DmarcResultRecord } from '../../../src/store/dmarc-results';
import { rsaKey } from '../../helpers/dkim-verifiers';

export const REPORT_SETTINGS: ReportSettings = {
  orgName: 'Receiver Org',
  email: 'postmaster@receiver.test',
  from: 'dmarc-reports@receiver.test',
  submitter: 'receiver.test',
  lockTtlMs: 60000,
  retryBaseMs: 60000,
  retryMaxMs: 3600000,
  maxReportsPerRun: 100,
  // Most tests look at a period's end to the second; the grace time has its own test.
  graceSec: 0,
};

/** A passing result of policyDomain's mail, received on 2026-12-06 at noon. */
export function rec(policyDomain: string, over: Partial<DmarcResultRecord> = {}): DmarcResultRecord {
  return {
    receivedAt: new Date('2026-12-06T12:00:00Z'),
    sourceIp: '192.0.2.1',
    headerFrom: policyDomain,
    policyDomain,
    policy: 'reject',
    result: 'pass',
    disposition: 'none',
    dkim: [{ domain: policyDomain, selector: 's', result: 'pass' }],
    spf: { domain: policyDomain, result: 'pass' },
    ...over,
  };
}

/** The RSA test key of helpers/dkim-verifiers (published by its zoneFor) as a report signing key. */
export function rsaSigningKey() {
  return {
    domain: rsaKey.domain,
    selector: rsaKey.selector,
    algorithm: rsaKey.algorithm,
    privateKey: createPrivateKey(readFileSync(rsaKey.file)),
    domainKeys: 'off' as const,
  };
}

/** `inner`, counting the most lookups it had in flight at once. */
export function countingResolver(inner: DnsResolver): { resolver: DnsResolver; most: () => number } {
  let inFlight = 0;
  let most = 0;
  const resolver: DnsResolver = {
    async query(name, type, signal) {
      most = Math.max(most, ++inFlight);
      try {
        return await inner.query(name, type, signal);
      } finally {
        inFlight--;
      }
    },
  };
  return { resolver, most: () => most };
}

/** What reportWorld starts once for a test file. */
export interface ReportServers {
  dns: DnsServer;
  resolver: DnsResolver;
  sink: Sink;
  pool: DownstreamPool;
}

/** What reportWorld makes anew for each test: a sqlite store of its own key prefix, the results on it, the run's deps. */
export interface ReportState {
  store: Store;
  results: StoredDmarcResults;
  deps: RunDeps;
}

/**
 * Registers the hooks of a report pass's world: the loopback DNS server with `zone` and a
 * resolver on it (`timeoutMs`), an smtp-sink the reports go to, and per test a fresh store
 * (`prefix` keeps the files' keys apart) with the sink's mail cleared. `servers` and `state`
 * are called with them, for the test file's own variables.
 */
export function reportWorld(zone: Zone, opts: { timeoutMs: number; prefix: string; now: () => Date }, servers: (s: ReportServers) => void, state: (s: ReportState) => void): void {
  const dir = mkdtempSync(path.join(tmpdir(), `dmarc-${opts.prefix}-`));
  const log = pino({ level: 'silent' });
  let s: ReportServers;
  let store: Store;
  beforeAll(async () => {
    const dns = await startDnsServer(zone);
    const resolver = createDnsResolver({ servers: [dns.server], timeoutMs: opts.timeoutMs, retries: 0, cacheMaxEntries: 0, cacheMaxTtlSec: 0 });
    const sink = await startSink();
    s = { dns, resolver, sink, pool: new DownstreamPool(sinkTarget(sink.port), 'receiver.test', log) };
    servers(s);
  });
  afterAll(async () => {
    await s.pool.close();
    await s.sink.close();
    await s.dns.close();
  });
  beforeEach(() => {
    store = openSqliteStore({ file: path.join(dir, 'run.db'), keyPrefix: `${opts.prefix}${Date.now()}${Math.random()}:`, busyTimeoutMs: 1000 });
    const results = new StoredDmarcResults(store);
    state({ store, results, deps: { store, results, resolver: s.resolver, send: poolSender(s.pool), now: opts.now, owner: 'test' } });
    s.sink.received.length = 0;
  });
  afterEach(() => store.close());
}
