import type { DnsResolver } from '../../../src/lib/dns';
import { runReports, type RunDeps } from '../../../src/services/dmarc-reports/run';
import type { StoredDmarcResults } from '../../../src/store/dmarc-results';
import type { Store } from '../../../src/store/store';
import type { DnsServer } from '../../helpers/dns-server';
import type { Sink } from '../../helpers/sink';
import { countingResolver, rec, REPORT_SETTINGS, reportWorld } from './fixtures';

const cfg = REPORT_SETTINGS;
const now = () => new Date('2026-12-07T06:00:00Z');

let dns: DnsServer;
let resolver: DnsResolver;
let sink: Sink;
let store: Store;
let results: StoredDmarcResults;
let deps: RunDeps;

reportWorld(
  {
    // c.test's name server stops answering once its mail is in (a hostile owner can).
    '_dmarc.c.test': { TXT: ['v=DMARC1; p=none; rua=mailto:agg@c.test'] },
    '_dmarc.d.test': { TXT: ['v=DMARC1; p=none; rua=mailto:agg@d.test'] },
    // Three outside addresses whose authorization lookups never answer.
    '_dmarc.e.test': { TXT: ['v=DMARC1; p=none; rua=mailto:a@x1.test,mailto:a@x2.test,mailto:a@x3.test'] },
    'e.test._report._dmarc.x1.test': { behaviour: 'timeout' },
    'e.test._report._dmarc.x2.test': { behaviour: 'timeout' },
    'e.test._report._dmarc.x3.test': { behaviour: 'timeout' },
    // An attacker's wildcard: any number of policy domains under one name server that stops answering.
    '_dmarc.a.wild.test': { behaviour: 'timeout' },
    '_dmarc.b.wild.test': { behaviour: 'timeout' },
    // A customer of the same (non-public) hosting domain, with a name server that answers.
    '_dmarc.shop.wild.test': { TXT: ['v=DMARC1; p=none; rua=mailto:agg@shop.wild.test'] },
    // Two organizations naming one destination whose authorization never answers.
    '_dmarc.f.test': { TXT: ['v=DMARC1; p=none; rua=mailto:a@sink.test'] },
    '_dmarc.g.test': { TXT: ['v=DMARC1; p=none; rua=mailto:a@sink.test'] },
    'f.test._report._dmarc.sink.test': { behaviour: 'timeout' },
    'g.test._report._dmarc.sink.test': { behaviour: 'timeout' },
  },
  { timeoutMs: 300, prefix: 's', now },
  (s) => ({ dns, resolver, sink } = s),
  (s) => ({ store, results, deps } = s),
);

beforeEach(() => {
  dns.zone['_dmarc.c.test'].behaviour = 'timeout';
  dns.queries.length = 0;
});

describe('report pass and a DNS that never answers', () => {
  test('a period that failed before is tried after the periods tried for the first time', async () => {
    await results.record(rec('c.test'));
    expect((await runReports(deps, cfg)).map((o) => o.status)).toEqual(['dns-temperror']);
    // Its back-off is over when d.test's first period is due; c.test sorts first by name.
    await store.delete('dmarc-report-wait:c.test:2026-12-06');
    await results.record(rec('d.test'));
    const out = await runReports(deps, { ...cfg, maxReportsPerRun: 1 });
    expect(out.map((o) => `${o.policyDomain} ${o.status}`)).toEqual(['d.test sent']);
    // With room in the pass, the retry comes after it.
    await results.record(rec('d.test'));
    expect((await runReports(deps, cfg)).map((o) => `${o.policyDomain} ${o.status}`)).toEqual(['d.test sent', 'c.test dns-temperror']);
  });

  test("a report's outside addresses are looked up at once, not one after another", async () => {
    const { resolver: counting, most } = countingResolver(resolver);
    await results.record(rec('e.test'));
    const [o] = await runReports({ ...deps, resolver: counting }, cfg);
    expect(o).toMatchObject({ status: 'dns-temperror', reason: 'authorization of x1.test, x2.test, x3.test' });
    expect(most()).toBe(3);
  });

  test('after a DNS failure of one policy domain, the other policy domains of its organization wait for the next pass', async () => {
    for (const d of ['a.wild.test', 'b.wild.test', 'd.test']) await results.record(rec(d));
    const out = await runReports(deps, cfg);
    expect(out.map((o) => `${o.policyDomain} ${o.status}`)).toEqual(['a.wild.test dns-temperror', 'b.wild.test waiting', 'd.test sent']);
    expect(dns.queries.map((q) => q.name)).not.toContain('_dmarc.b.wild.test');
    // Not a failed try of its own: no back-off.
    expect(await store.get('dmarc-report-attempts:b.wild.test:2026-12-06')).toBeUndefined();
  });

  test("a period that waited for another domain's DNS failure is tried at the next pass, whatever fails before it there", async () => {
    // The attacker's policy domains sort before the customer's, and a fresh one fails each pass.
    for (const d of ['a.wild.test', 'b.wild.test', 'shop.wild.test']) await results.record(rec(d));
    const first = await runReports(deps, cfg);
    expect(first.map((o) => `${o.policyDomain} ${o.status}`)).toEqual(['a.wild.test dns-temperror', 'b.wild.test waiting', 'shop.wild.test waiting']);
    const second = await runReports(deps, cfg);
    expect(second.map((o) => `${o.policyDomain} ${o.status}`)).toEqual(['a.wild.test waiting', 'b.wild.test dns-temperror', 'shop.wild.test sent']);
    expect(sink.received.map((m) => m.recipients.map((r) => r.address))).toEqual([['agg@shop.wild.test']]);
  });

  test('a destination whose authorization failed is not asked again in the same pass for another policy domain', async () => {
    for (const d of ['f.test', 'g.test']) await results.record(rec(d));
    const out = await runReports(deps, cfg);
    expect(out.map((o) => `${o.policyDomain} ${o.status}`)).toEqual(['f.test dns-temperror', 'g.test waiting']);
    expect(dns.queries.map((q) => q.name)).not.toContain('g.test._report._dmarc.sink.test');
    expect(await store.get('dmarc-report-attempts:g.test:2026-12-06')).toBeUndefined();
  });

  test('a pass told to stop starts no further period, and the lookup it cut is not counted as a failed try', async () => {
    await results.record(rec('c.test'));
    await results.record(rec('d.test'));
    const stop = new AbortController();
    const stopping: DnsResolver = {
      query(name, type, signal) {
        // Stopped while c.test's policy lookup waits for an answer that never comes.
        if (name === '_dmarc.c.test') setImmediate(() => stop.abort());
        return resolver.query(name, type, signal);
      },
    };
    const out = await runReports({ ...deps, resolver: stopping }, cfg, { signal: stop.signal });
    expect(out.map((o) => `${o.policyDomain} ${o.status}`)).toEqual(['c.test dns-temperror']);
    expect(dns.queries.map((q) => q.name)).not.toContain('_dmarc.d.test');
    expect(await store.get('dmarc-report-attempts:c.test:2026-12-06')).toBeUndefined();
    expect(await store.get('dmarc-report-wait:c.test:2026-12-06')).toBeUndefined();
    expect(await results.periods()).toHaveLength(2);
  });
});
