/**
 * SPF (RFC 7208) edge cases, evaluated against a loopback DNS server.
 */
import { spfStage } from '../../src/stages/spf';
import { startDnsServer, type DnsServer, type Zone } from '../helpers/dns-server';
import { runStage, testStageDeps, testTransaction } from '../helpers/stage-run';
import { SPF_RESULT } from '../../src/lib/authentication-results';

const chain = (n: number): Zone =>
  Object.fromEntries(Array.from({ length: n }, (_, i) => [`l${i}.chain.example`, { TXT: [i === n - 1 ? 'v=spf1 -all' : `v=spf1 include:l${i + 1}.chain.example -all`] }]));

const zone: Zone = {
  'pass.example': { TXT: ['v=spf1 ip4:192.0.2.0/24 ip6:2001:db8:1::/48 -all'] },
  'soft.example': { TXT: ['v=spf1 ~all'] },
  'neutral.example': { TXT: ['v=spf1 ?all'] },
  'inc.example': { TXT: ['v=spf1 include:pass.example -all'] },
  'redir.example': { TXT: ['v=spf1 redirect=pass.example'] },
  'mx6.example': { TXT: ['v=spf1 mx -all'], MX: [[10, 'mail.mx6.example']] },
  'mail.mx6.example': { A: ['198.51.100.20'], AAAA: ['2001:db8:6::25'] },
  'a6.example': { TXT: ['v=spf1 a:host.a6.example/24//64 -all'] },
  'host.a6.example': { A: ['198.51.100.1'], AAAA: ['2001:db8:a6::1'] },
  'void.example': { TXT: ['v=spf1 a:n1.void.example a:n2.void.example a:n3.void.example ip4:192.0.2.1 -all'] },
  'two-void.example': { TXT: ['v=spf1 a:n1.void.example a:n2.void.example ip4:192.0.2.1 -all'] },
  'macro.example': { TXT: ['v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} -all'] },
  '10.2.0.192.alice._spf.macro.example': { A: ['127.0.0.2'] },
  'twice.example': { TXT: ['v=spf1 -all', 'v=spf1 +all'] },
  'slow.example': { behaviour: 'timeout' },
  'helo.example': { TXT: ['v=spf1 ip4:192.0.2.99 -all'] },
  'nospf.example': { TXT: ['some other text'] },
  ...chain(12),
};

let dns: DnsServer;
beforeAll(async () => {
  dns = await startDnsServer(zone);
});
afterAll(() => dns.close());

async function spf(mailFrom: string, addr: string, helo = 'client.example') {
  const tx = testTransaction('From: a@example.org\r\n\r\nx\r\n', { mailFrom, client: { addr, helo } });
  // The timeout case waits out a short timeout; the others get the default, long enough under load.
  const { outcome, results } = await runStage(spfStage, tx, testStageDeps(dns, mailFrom.endsWith('@slow.example') ? { timeoutMs: 300 } : {}));
  const spf = results.get(SPF_RESULT);
  return { result: spf?.result, comment: spf?.comment, findings: outcome.findings.map((f) => f.code) };
}

test.each([
  ['ip4 in the range', 'a@pass.example', '192.0.2.7', 'pass'],
  ['ip4 outside, -all', 'a@pass.example', '203.0.113.1', 'fail'],
  ['ip6 in the range', 'a@pass.example', '2001:db8:1:2::3', 'pass'],
  ['Postfix IPv6: prefix', 'a@pass.example', 'IPv6:2001:db8:1::9', 'pass'],
  ['~all', 'a@soft.example', '203.0.113.1', 'softfail'],
  ['?all', 'a@neutral.example', '203.0.113.1', 'neutral'],
  ['include: that matches', 'a@inc.example', '192.0.2.7', 'pass'],
  ['redirect=', 'a@redir.example', '192.0.2.7', 'pass'],
  ['redirect= that does not match', 'a@redir.example', '203.0.113.1', 'fail'],
  ['mx with an IPv6 client', 'a@mx6.example', '2001:db8:6::25', 'pass'],
  ['mx with another IPv6 client', 'a@mx6.example', '2001:db8:6::26', 'fail'],
  ['a/24//64 with an IPv6 client in the /64', 'a@a6.example', '2001:db8:a6::ffff', 'pass'],
  ['a/24//64 with an IPv4 client in the /24', 'a@a6.example', '198.51.100.200', 'pass'],
  ['two void lookups are allowed', 'a@two-void.example', '192.0.2.1', 'pass'],
  ['a third void lookup is a permerror (4.6.4)', 'a@void.example', '192.0.2.1', 'permerror'],
  ['more than 10 DNS-querying terms is a permerror (4.6.4)', 'a@l0.chain.example', '192.0.2.1', 'permerror'],
  ['macros %{ir} and %{l1r+-} in exists:', 'alice@macro.example', '192.0.2.10', 'pass'],
  ['a macro that expands to a name without a record', 'bob@macro.example', '192.0.2.10', 'fail'],
  ['two SPF records is a permerror (4.5)', 'a@twice.example', '192.0.2.1', 'permerror'],
  ['no SPF record is none', 'a@nospf.example', '192.0.2.1', 'none'],
  ['a domain that does not exist is none', 'a@nowhere.example', '192.0.2.1', 'none'],
  ['a DNS timeout is a temperror', 'a@slow.example', '192.0.2.1', 'temperror'],
])('%s: %s from %s is %s', async (_name, mailFrom, addr, expected) => {
  expect((await spf(mailFrom, addr)).result).toBe(expected);
});

test('ten DNS-querying terms are still evaluated', async () => {
  dns.zone['l11.chain.example'] = { TXT: ['v=spf1 ip4:192.0.2.1 -all'] };
  try {
    expect((await spf('a@l1.chain.example', '192.0.2.1')).result).toBe('pass');
  } finally {
    dns.zone['l11.chain.example'] = { TXT: ['v=spf1 -all'] };
  }
});

test('the null sender is checked against the HELO name (2.4)', async () => {
  expect((await spf('', '192.0.2.99', 'helo.example')).result).toBe('pass');
  expect((await spf('', '192.0.2.98', 'helo.example')).result).toBe('fail');
});

test('without a client address from XFORWARD, nothing is evaluated', async () => {
  const r = await spf('a@pass.example', '[UNAVAILABLE]');
  expect(r).toEqual({ result: 'none', comment: 'no client address from XFORWARD', findings: ['SPF_NOT_CHECKED'] });
});
