/** What the DMARC report tests share: the report settings, a stored record, a signing key, a resolver that counts its lookups in flight. */
import { createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { DnsResolver } from '../../../src/lib/dns';
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
