/**
 * What a hostile or broken record can make the evaluator do: the caps on queries and nesting,
 * the AbortSignal, very large records, macro bombs, PTR floods. Against the loopback DNS server,
 * counting the queries that actually reached it.
 */
import { createDnsResolver, type DnsResolver } from '../../../src/lib/dns';
import { checkSpf, DEFAULT_LIMITS, type SpfInput } from '../../../src/lib/spf';
import { startDnsServer, type DnsServer, type Zone } from '../../helpers/dns-server';

const chain = (prefix: string, n: number): Zone =>
  Object.fromEntries(Array.from({ length: n }, (_, i) => [`l${i}.${prefix}`, { TXT: [i === n - 1 ? 'v=spf1 ip4:192.0.2.1 -all' : `v=spf1 include:l${i + 1}.${prefix} -all`] }]));

const mxHosts = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`mx${i}.many.example`, { A: [`198.51.100.${i + 1}`] }]));
const hugeRecord = `v=spf1 ${Array.from({ length: 3000 }, (_, i) => `ip4:10.${i >> 8}.${i & 255}.1`).join(' ')} ip4:192.0.2.1 -all`;

const zone: Zone = {
  ...chain('deep.example', 40),
  ...mxHosts,
  'many.example': { MX: Array.from({ length: 10 }, (_, i) => [i, `mx${i}.many.example`] as [number, string]) },
  'worse.example': { TXT: [`v=spf1 ${'mx:many.example '.repeat(20)}-all`] },
  'worst.example': { TXT: [`v=spf1 ${'mx:many.example '.repeat(10)}-all`] },
  'huge.example': { TXT: [hugeRecord], behaviour: 'truncate' },
  'huge-bad.example': { TXT: [`${hugeRecord} ip4:1.2.3`], behaviour: 'truncate' },
  'bomb.example': { TXT: [`v=spf1 exists:${'%{s}'.repeat(400)}.example -all`] },
  'slow.example': { TXT: ['v=spf1 a:hang.example -all'] },
  'hang.example': { behaviour: 'timeout' },
  'ptrs.example': { TXT: ['v=spf1 ptr -all'] },
  '1.2.0.192.in-addr.arpa': { PTR: Array.from({ length: 50 }, (_, i) => `h${i}.ptrs.example`) },
  'expcap.example': { TXT: ['v=spf1 -all exp=why.expcap.example'] },
  'why.expcap.example': { TXT: ['not allowed'] },
  'self.example': { TXT: ['v=spf1 include:self.example -all'] },
};

let dns: DnsServer;
let resolver: DnsResolver;
beforeAll(async () => {
  dns = await startDnsServer(zone);
  resolver = createDnsResolver({ servers: [dns.server], timeoutMs: 5000, retries: 0, cacheMaxEntries: 0, cacheMaxTtlSec: 0 });
});
afterAll(() => dns.close());
beforeEach(() => {
  dns.queries.length = 0;
});

const check = (sender: string, more: Partial<SpfInput> = {}) => checkSpf({ ip: '192.0.2.1', sender, helo: 'client.example', resolver, ...more });

test('an include chain deeper than the nesting cap is a permerror even when the lookup limit is raised', async () => {
  const r = await check('a@l0.deep.example', { limits: { dnsMechanisms: 1000 } });
  expect(r.result).toBe('permerror');
  expect(r.reason).toMatch(/nested deeper than 10/);
  expect(dns.queries.length).toBeLessThanOrEqual(DEFAULT_LIMITS.depth + 1);
});

test('an include chain within raised limits is followed to the end', async () => {
  expect((await check('a@l0.deep.example', { limits: { dnsMechanisms: 100, depth: 50 } })).result).toBe('pass');
});

test('the total query cap stops an evaluation whose lookup limit was raised', async () => {
  const r = await check('a@worse.example', { limits: { dnsMechanisms: 100 } });
  expect(r).toMatchObject({ result: 'permerror', reason: `more than ${DEFAULT_LIMITS.dnsQueries} DNS queries` });
  expect(dns.queries.length).toBe(DEFAULT_LIMITS.dnsQueries);
});

test("the RFC's worst case (10 mx terms of 10 MX names each) stays under the default query cap", async () => {
  const r = await check('a@worst.example');
  expect(r.result).toBe('fail');
  expect(r.lookups).toEqual({ dnsMechanisms: 10, voidLookups: 0, dnsQueries: 111 });
});

test('a self-include ends at the 10-lookup limit', async () => {
  const r = await check('a@self.example');
  expect(r.result).toBe('permerror');
  expect(r.lookups.dnsMechanisms).toBe(11);
  expect(dns.queries.length).toBe(11);
});

test('only the first 10 of 50 PTR names are looked up', async () => {
  const r = await check('a@ptrs.example');
  expect(r.result).toBe('fail');
  expect(dns.queries.filter((q) => q.type === 'A')).toHaveLength(DEFAULT_LIMITS.ptrNames);
});

test('a record of 3000 terms fetched over TCP is evaluated', async () => {
  const started = Date.now();
  const r = await check('a@huge.example');
  expect(r).toMatchObject({ result: 'pass', mechanism: 'ip4:192.0.2.1' });
  expect(dns.queries.some((q) => q.tcp)).toBe(true);
  expect(Date.now() - started).toBeLessThan(1000);
});

test('a syntax error in the last of 3000 terms is a permerror although an earlier term matches', async () => {
  expect((await check('a@huge-bad.example')).result).toBe('permerror');
});

test('a macro that expands to thousands of characters is cut to a 253-character name on the left', async () => {
  const r = await check(`${'x'.repeat(40)}@bomb.example`);
  expect(r.result).toBe('fail');
  const asked = dns.queries.filter((q) => q.type === 'A');
  expect(asked).toHaveLength(1);
  expect(asked[0].name.length).toBeLessThanOrEqual(253);
  expect(asked[0].name.endsWith('@bomb.example.example')).toBe(true);
});

test('an abort during a DNS query ends the evaluation at once with temperror', async () => {
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 50);
  const started = Date.now();
  const r = await check('a@slow.example', { signal: ac.signal });
  expect(r).toMatchObject({ result: 'temperror', reason: 'evaluation aborted' });
  expect(Date.now() - started).toBeLessThan(1000);
});

test('an evaluation whose signal has already fired asks DNS nothing', async () => {
  const ac = new AbortController();
  ac.abort();
  const r = await check('a@huge.example', { signal: ac.signal });
  expect(r.result).toBe('temperror');
  expect(dns.queries).toHaveLength(0);
});

test('a fail stays a fail when the query cap runs out on its explanation', async () => {
  const r = await check('a@expcap.example', { limits: { dnsQueries: 1 } });
  expect(r).toMatchObject({ result: 'fail', explanation: undefined });
  expect(dns.queries).toHaveLength(1);
});
