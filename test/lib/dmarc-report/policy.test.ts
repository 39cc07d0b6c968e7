/** The DMARC record as a report reads it (src/lib/dmarc-report/policy.ts): tags kept as published, report addresses. */
import { parseDmarcRecord, parseReportUri } from '../../../src/lib/dmarc-report/policy';

describe('DMARC record for reports', () => {
  test('pct= that is not 1 to 3 digits from 0 to 100 is the default 100, as published', () => {
    const pct = (v: string) => parseDmarcRecord('x.test', `v=DMARC1; p=reject; pct=${v}`)?.pct;
    expect([pct('0'), pct('50'), pct('100'), pct('007')]).toEqual([0, 50, 100, 7]);
    for (const bad of ['', ' ', '0x32', '1e1', '5.0', '-1', '101', '+50']) expect(pct(bad)).toBe(100);
  });

  test('an address with a root dot is the same mailbox: written without it, and listed once', () => {
    expect(parseReportUri('mailto:agg@Example.ORG.!10m')).toEqual({ address: 'agg@Example.ORG', domain: 'example.org', maxBytes: 10 * 1024 ** 2 });
    const p = parseDmarcRecord('example.org', 'v=DMARC1; p=none; rua=mailto:agg@example.org,mailto:agg@example.org.');
    expect(p?.rua.map((u) => u.address)).toEqual(['agg@example.org']);
  });

  test('a local part over 64 octets (RFC 5321) is not an address reports go to', () => {
    expect(parseReportUri(`mailto:${'a'.repeat(64)}@x.test`)?.address).toBe(`${'a'.repeat(64)}@x.test`);
    expect(parseReportUri(`mailto:${'a'.repeat(65)}@x.test`)).toBeNull();
  });
});
