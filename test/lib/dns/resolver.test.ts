import { createDnsResolver, type DnsConfig } from '../../../src/lib/dns';
import { startDnsServer, type DnsServer } from '../../helpers/dns-server';

const config = (server: DnsServer, over: Partial<DnsConfig> = {}): DnsConfig => ({
  servers: [server.server],
  timeoutMs: 300,
  retries: 1,
  cacheMaxEntries: 100,
  cacheMaxTtlSec: 3600,
  ...over,
});

let dns: DnsServer;
beforeEach(async () => {
  dns = await startDnsServer({
    'example.org': { A: ['192.0.2.1'], AAAA: ['2001:db8::1'], MX: [[10, 'mx.example.org']], TXT: ['v=spf1 -all'] },
    'long.example.org': { TXT: ['x'.repeat(600)] },
    'alias.example.org': { CNAME: 'example.org' },
    'loop1.example.org': { CNAME: 'loop2.example.org' },
    'loop2.example.org': { CNAME: 'loop1.example.org' },
    'dangling.example.org': { CNAME: 'gone.example.org' },
    'big.example.org': { TXT: ['truncated over udp'], behaviour: 'truncate' },
    'slow.example.org': { behaviour: 'timeout' },
    'broken.example.org': { behaviour: 'servfail' },
    'a.b.parent.example.org': { A: ['192.0.2.9'] },
    'short.example.org': { TXT: ['ttl 1'], ttl: 1 },
  });
});
afterEach(() => dns.close());

test('an A, AAAA, MX and TXT answer comes back typed with its TTL', async () => {
  const r = createDnsResolver(config(dns));
  expect(await r.query('example.org', 'A')).toEqual({ kind: 'answer', records: ['192.0.2.1'], ttlSec: 300 });
  expect(await r.query('EXAMPLE.org.', 'AAAA')).toMatchObject({ kind: 'answer', records: ['2001:db8::1'] });
  expect(await r.query('example.org', 'MX')).toMatchObject({ records: [{ exchange: 'mx.example.org', priority: 10 }] });
  expect(await r.query('example.org', 'TXT')).toMatchObject({ records: [['v=spf1 -all']] });
});

test('a TXT record longer than 255 octets keeps its character-strings apart', async () => {
  const r = await createDnsResolver(config(dns)).query('long.example.org', 'TXT');
  expect(r.kind === 'answer' && r.records[0].map((s) => s.length)).toEqual([255, 255, 90]);
});

test('NXDOMAIN, NODATA and an empty non-terminal are told apart', async () => {
  const r = createDnsResolver(config(dns));
  expect(await r.query('nowhere.example.org', 'TXT')).toEqual({ kind: 'nxdomain' });
  expect(await r.query('example.org', 'PTR')).toEqual({ kind: 'nodata' });
  expect(await r.query('b.parent.example.org', 'A')).toEqual({ kind: 'nodata' });
});

test('a CNAME is followed when the server answers with the whole chain', async () => {
  const r = createDnsResolver(config(dns));
  expect(await r.query('alias.example.org', 'A')).toMatchObject({ kind: 'answer', records: ['192.0.2.1'] });
  expect(await r.query('alias.example.org', 'CNAME')).toMatchObject({ kind: 'answer', records: ['example.org'] });
});

test('a CNAME is chased by the resolver when the server answers only the alias', async () => {
  dns.followCnames = false;
  const r = createDnsResolver(config(dns));
  expect(await r.query('alias.example.org', 'TXT')).toMatchObject({ kind: 'answer', records: [['v=spf1 -all']] });
  expect(dns.queries.map((q) => q.name)).toEqual(['alias.example.org', 'example.org']);
});

test('a CNAME to a missing name is NXDOMAIN and a CNAME loop is a temperror', async () => {
  const r = createDnsResolver(config(dns));
  expect(await r.query('dangling.example.org', 'TXT')).toEqual({ kind: 'nxdomain' });
  expect(await r.query('loop1.example.org', 'TXT')).toMatchObject({ kind: 'temperror' });
});

test('a truncated UDP answer is asked again over TCP', async () => {
  const r = await createDnsResolver(config(dns)).query('big.example.org', 'TXT');
  expect(r).toMatchObject({ kind: 'answer', records: [['truncated over udp']] });
  expect(dns.queries.map((q) => q.tcp)).toEqual([false, true]);
});

test('a server that does not answer is tried again, then the lookup is a temperror', async () => {
  const started = Date.now();
  const r = await createDnsResolver(config(dns, { retries: 2 })).query('slow.example.org', 'TXT');
  expect(r).toMatchObject({ kind: 'temperror' });
  expect(dns.queries).toHaveLength(3);
  expect(Date.now() - started).toBeGreaterThanOrEqual(850);
});

test('SERVFAIL is a temperror and is not cached', async () => {
  const r = createDnsResolver(config(dns, { retries: 0 }));
  expect(await r.query('broken.example.org', 'TXT')).toMatchObject({ kind: 'temperror' });
  dns.zone['broken.example.org'] = { TXT: ['fixed'] };
  expect(await r.query('broken.example.org', 'TXT')).toMatchObject({ kind: 'answer' });
});

test('the next server is asked when the first one does not answer', async () => {
  const r = createDnsResolver(config(dns, { servers: ['127.0.0.1:9', dns.server], retries: 0, timeoutMs: 200 }));
  expect(await r.query('example.org', 'A')).toMatchObject({ kind: 'answer' });
});

test('answers are cached for their TTL, negative answers for the SOA minimum', async () => {
  let now = 1_000_000;
  const r = createDnsResolver(config(dns), { now: () => now });
  await r.query('short.example.org', 'TXT');
  await r.query('short.example.org', 'TXT');
  await r.query('nowhere.example.org', 'A');
  await r.query('nowhere.example.org', 'A');
  expect(dns.queries).toHaveLength(2);
  now += 1500;
  await r.query('short.example.org', 'TXT');
  await r.query('nowhere.example.org', 'A');
  expect(dns.queries).toHaveLength(3);
});

test('the cache holds at most cacheMaxEntries answers, dropping the least recently used', async () => {
  const r = createDnsResolver(config(dns, { cacheMaxEntries: 2 }));
  await r.query('example.org', 'A');
  await r.query('example.org', 'AAAA');
  await r.query('example.org', 'A');
  await r.query('example.org', 'MX');
  await r.query('example.org', 'A');
  await r.query('example.org', 'AAAA');
  expect(dns.queries.map((q) => q.type)).toEqual(['A', 'AAAA', 'MX', 'AAAA']);
});

test('identical lookups at the same time share one query', async () => {
  const r = createDnsResolver(config(dns));
  await Promise.all([r.query('example.org', 'TXT'), r.query('example.org', 'TXT'), r.query('example.org', 'TXT')]);
  expect(dns.queries).toHaveLength(1);
});

test('an aborted lookup returns a temperror at once', async () => {
  const ac = new AbortController();
  const pending = createDnsResolver(config(dns, { timeoutMs: 5000 })).query('slow.example.org', 'A', ac.signal);
  ac.abort();
  expect(await pending).toEqual({ kind: 'temperror', reason: 'aborted' });
});

test('a caller whose signal is already aborted sends no query at all', async () => {
  const ac = new AbortController();
  ac.abort();
  expect(await createDnsResolver(config(dns)).query('late.example.org', 'TXT', ac.signal)).toEqual({ kind: 'temperror', reason: 'aborted' });
  expect(dns.queries).toHaveLength(0);
});

test('a name that cannot exist is NXDOMAIN without a query', async () => {
  const r = createDnsResolver(config(dns));
  expect(await r.query(`${'x'.repeat(64)}.example.org`, 'A')).toEqual({ kind: 'nxdomain' });
  expect(await r.query('a..example.org', 'A')).toEqual({ kind: 'nxdomain' });
  expect(dns.queries).toHaveLength(0);
});
