/**
 * Record syntax (RFC 7208 §4.6, §12) where the conformance suite has few or no cases.
 */
import { parseRecord, RecordSyntaxError } from '../../../src/lib/spf/record';

test('mechanism and modifier names are case-insensitive', () => {
  const r = parseRecord('v=spf1 IP4:192.0.2.0/24 Include:_spf.example.com ~ALL Redirect=example.net');
  expect(r.directives.map((d) => [d.qualifier, d.mechanism.kind])).toEqual([
    ['+', 'ip4'],
    ['+', 'include'],
    ['~', 'all'],
  ]);
  expect(r.redirect?.text).toBe('example.net');
});

test('a/mx take a domain-spec that contains "/" and a dual CIDR length after it', () => {
  const [a, mx] = parseRecord('v=spf1 a:foo/bar.example.com/24//64 mx//0').directives.map((d) => d.mechanism);
  expect(a).toMatchObject({ kind: 'a', domain: { text: 'foo/bar.example.com' }, cidr4: 24, cidr6: 64 });
  expect(mx).toMatchObject({ kind: 'mx', domain: undefined, cidr4: 32, cidr6: 0 });
});

test('unknown modifiers are kept out of the evaluation but must be macro-strings', () => {
  expect(parseRecord('v=spf1 -all moo=%{d}.%{c}').directives).toHaveLength(1);
  expect(() => parseRecord('v=spf1 -all moo=%x')).toThrow(RecordSyntaxError);
});

test.each([
  ['a macro letter legal only in explanations, in exp=', 'v=spf1 -all exp=%{c}.example.com'],
  ['%{t} in a mechanism', 'v=spf1 exists:%{t}.example.com'],
  ['a zero number of parts', 'v=spf1 exists:%{d0}.example.com'],
  ['a delimiter outside the set', 'v=spf1 exists:%{l;}.example.com'],
  ['an unterminated macro', 'v=spf1 exists:%{d.example.com'],
  ['a tab as separator', 'v=spf1 a\t-all'],
  ['an IPv6 zone index', 'v=spf1 ip6:fe80::1%eth0'],
  ['a leading zero in a prefix length', 'v=spf1 ip6:2001:db8::/048'],
  ['a qualifier on a modifier', 'v=spf1 -redirect=example.com'],
  ['redirect twice, with a matching term first', 'v=spf1 +all redirect=a.example redirect=b.example'],
])('%s is a syntax error', (_why, record) => {
  expect(() => parseRecord(record)).toThrow(RecordSyntaxError);
});
