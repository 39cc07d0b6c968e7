import { createDnsResolver, type DnsResolver } from '../../../src/lib/dns';
import { resolveDestinations } from '../../../src/lib/dmarc-report/destinations';
import { fetchPolicy, parseReportUri, type ReportUri } from '../../../src/lib/dmarc-report/policy';
import { startDnsServer, type DnsServer } from '../../helpers/dns-server';

let dns: DnsServer;
let resolver: DnsResolver;

beforeAll(async () => {
  dns = await startDnsServer({
    '_dmarc.example.org': { TXT: ['v=DMARC1; p=reject; rua=mailto:d@example.org,mailto:agg@reports.test!5m,mailto:x@nobody.test,mailto:y@broken.test,mailto:z@sub.example.org'] },
    'example.org._report._dmarc.reports.test': { TXT: ['v=DMARC1'] },
    'other.test._report._dmarc.nobody.test': { TXT: ['v=DMARC1'] },
    'example.org._report._dmarc.broken.test': { TXT: ['v=DMARC1'], behaviour: 'servfail' },
    '_dmarc.two.test': { TXT: ['v=DMARC1; p=none', 'v=DMARC1; p=reject'] },
    '_dmarc.down.test': { TXT: ['v=DMARC1; p=none'], behaviour: 'servfail' },
  });
  resolver = createDnsResolver({ servers: [dns.server], timeoutMs: 2000, retries: 0, cacheMaxEntries: 0, cacheMaxTtlSec: 0 });
});

afterAll(() => dns.close());

const uri = (s: string) => parseReportUri(s) as ReportUri;

describe('report destinations (RFC 7489 7.1)', () => {
  test('addresses in the policy domain are used; outside it only when the destination authorizes the policy domain', async () => {
    const found = await fetchPolicy(resolver, 'example.org');
    if (found.kind !== 'found') throw new Error(`no policy: ${found.kind}`);
    const d = await resolveDestinations(resolver, 'example.org', found.policy.rua);
    expect(d.send.map((u) => u.address)).toEqual(['d@example.org', 'agg@reports.test', 'z@sub.example.org']);
    expect(d.send[1].maxBytes).toBe(5 * 1024 * 1024);
    // nobody.test authorizes other.test only.
    expect(d.refused.map((u) => u.address)).toEqual(['x@nobody.test']);
  });

  test('a DNS failure of the authorization lookup leaves the address for a later try, not refused', async () => {
    const d = await resolveDestinations(resolver, 'example.org', [uri('mailto:y@broken.test')]);
    expect(d).toEqual({ send: [], retry: [uri('mailto:y@broken.test')], refused: [] });
  });

  test('no authorizing record at all refuses the address', async () => {
    const d = await resolveDestinations(resolver, 'example.org', [uri('mailto:a@elsewhere.test')]);
    expect(d.refused).toHaveLength(1);
    expect(dns.queries.some((q) => q.name === 'example.org._report._dmarc.elsewhere.test' && q.type === 'TXT')).toBe(true);
  });
});

describe('policy lookup for a report', () => {
  test('two DMARC records are no policy, a failing lookup is a temperror, an absent one none', async () => {
    expect((await fetchPolicy(resolver, 'two.test')).kind).toBe('none');
    expect((await fetchPolicy(resolver, 'down.test')).kind).toBe('temperror');
    expect((await fetchPolicy(resolver, 'absent.test')).kind).toBe('none');
  });
});
