/**
 * checkSpf's contract beyond the conformance suite: the identities, the result fields the
 * stage and the policy service read (comment, mechanism, explanation, lookups), IPv6 clients
 * and the IPv6 macros, against the loopback DNS server.
 */
import { createDnsResolver, type DnsResolver } from '../../../src/lib/dns';
import { checkSpf, type SpfInput } from '../../../src/lib/spf';
import { startDnsServer, type DnsServer, type Zone } from '../../helpers/dns-server';

const V6 = '2001:db8:0:0:1:0:0:1';
const V6_NIBBLES = '1.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2';

const zone: Zone = {
  'example.com': { TXT: ['v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/48 -all exp=why.example.com'] },
  'why.example.com': { TXT: ['%{c} may not send for %{d} (%{v})'] },
  'mail.example.com': { TXT: ['v=spf1 a -all'], A: ['198.51.100.10'], AAAA: ['2001:db8:5::10'] },
  'inc.example.com': { TXT: ['v=spf1 include:example.com ~all'] },
  'nibbles.example.com': { TXT: ['v=spf1 exists:%{ir}.%{v}.list.example.com -all'] },
  [`${V6_NIBBLES.toLowerCase()}.ip6.list.example.com`]: { A: ['127.0.0.2'] },
  'ptr6.example.com': { TXT: ['v=spf1 ptr -all'] },
  [`${V6_NIBBLES.toLowerCase()}.ip6.arpa`]: { PTR: ['host.ptr6.example.com'] },
  'host.ptr6.example.com': { AAAA: [V6] },
  'xn--bcher-kva.example': { TXT: ['v=spf1 ip4:192.0.2.1 -all'] },
};

let dns: DnsServer;
let resolver: DnsResolver;
beforeAll(async () => {
  dns = await startDnsServer(zone);
  resolver = createDnsResolver({ servers: [dns.server], timeoutMs: 300, retries: 0, cacheMaxEntries: 0, cacheMaxTtlSec: 0 });
});
afterAll(() => dns.close());

const check = (ip: string, sender: string | null, more: Partial<SpfInput> = {}) =>
  checkSpf({ ip, sender, helo: 'mail.example.com', resolver, receiver: 'mx.example.net', ...more });

test('a pass names the domain, the deciding mechanism and says so in the A-R comment style', async () => {
  expect(await check('192.0.2.10', 'alice@example.com')).toMatchObject({
    result: 'pass',
    domain: 'example.com',
    identity: 'mailfrom',
    mechanism: 'ip4:192.0.2.0/24',
    comment: 'mx.example.net: domain of alice@example.com designates 192.0.2.10 as permitted sender',
    lookups: { dnsMechanisms: 0, voidLookups: 0, dnsQueries: 1 },
  });
});

test('a fail carries the expanded exp= explanation; a softfail through include: does not', async () => {
  const fail = await check('203.0.113.5', 'alice@example.com');
  expect(fail).toMatchObject({ result: 'fail', mechanism: '-all', explanation: '203.0.113.5 may not send for example.com (in-addr)' });
  expect(fail.comment).toBe('mx.example.net: domain of alice@example.com does not designate 203.0.113.5 as permitted sender');
  const soft = await check('203.0.113.5', 'alice@inc.example.com');
  expect(soft).toMatchObject({ result: 'softfail', mechanism: '~all' });
  expect(soft.explanation).toBeUndefined();
});

test('the null sender is checked as postmaster@HELO', async () => {
  expect(await check('2001:db8:5::10', '')).toMatchObject({ result: 'pass', identity: 'helo', domain: 'mail.example.com', sender: 'postmaster@mail.example.com' });
  expect(await check('2001:db8:5::10', null)).toMatchObject({ result: 'pass', identity: 'helo' });
});

test('the null sender with a HELO that is no domain name has no policy (none)', async () => {
  for (const helo of ['', 'OEMCOMPUTER', '[192.0.2.1]', '192.0.2.1']) {
    const r = await check('192.0.2.1', '', { helo });
    expect(r.result).toBe('none');
    expect(r.reason).toMatch(/not a fully qualified domain name/);
  }
});

test('a sender without a local-part is postmaster@domain', async () => {
  expect((await check('192.0.2.1', '@example.com')).sender).toBe('postmaster@example.com');
});

test('an unusable client address is a temperror, not an exception', async () => {
  expect(await check('not-an-ip', 'alice@example.com')).toMatchObject({ result: 'temperror', reason: 'missing or invalid client IP address' });
});

test('an IPv6 client matches ip6: and %{c} is its RFC 5952 form', async () => {
  expect((await check(V6, 'alice@example.com')).result).toBe('pass');
  const r = await check('2001:DB8:1::0:0:1', 'alice@example.com');
  expect(r).toMatchObject({ result: 'fail', explanation: '2001:db8:1::1 may not send for example.com (ip6)' });
});

test('an IPv4-mapped IPv6 client is evaluated as its IPv4 address', async () => {
  expect(await check('::ffff:192.0.2.10', 'alice@example.com')).toMatchObject({ result: 'pass', comment: expect.stringContaining('designates 192.0.2.10 ') });
});

test('%{ir} of an IPv6 client is its 32 nibbles reversed, and %{v} is ip6', async () => {
  expect((await check(V6, 'alice@nibbles.example.com')).result).toBe('pass');
  expect(dns.queries.some((q) => q.name === `${V6_NIBBLES.toLowerCase()}.ip6.list.example.com`)).toBe(true);
});

test('ptr validates an IPv6 client through ip6.arpa and AAAA', async () => {
  expect((await check(V6, 'alice@ptr6.example.com')).result).toBe('pass');
  expect((await check('2001:db8::2', 'alice@ptr6.example.com')).result).toBe('fail');
});

test('an internationalised sender domain is looked up as its A-label (RFC 8616)', async () => {
  expect(await check('192.0.2.1', 'alice@bücher.example')).toMatchObject({ result: 'pass', domain: 'xn--bcher-kva.example' });
});
