/**
 * Macro expansion (RFC 7208 §7.3, §7.4), with the RFC's own examples.
 */
import { DOMAIN_BOUND, expand, EXPLANATION_BOUND, parseDomainSpec, parseMacroString, toQueryName, type MacroValues } from '../../../src/lib/spf/macro';

const values: MacroValues = {
  s: 'strong-bad@email.example.com',
  l: 'strong-bad',
  o: 'email.example.com',
  d: 'email.example.com',
  i: '192.0.2.3',
  h: 'mx.example.org',
  c: '192.0.2.3',
  r: 'mx.example.net',
  t: '1700000000',
  v: 'in-addr',
  p: async () => 'mx.example.org',
};
const domain = (spec: string) => expand(parseDomainSpec(spec), values);

test.each([
  ['%{s}', 'strong-bad@email.example.com'],
  ['%{o}', 'email.example.com'],
  ['%{d}', 'email.example.com'],
  ['%{d4}', 'email.example.com'],
  ['%{d3}', 'email.example.com'],
  ['%{d2}', 'example.com'],
  ['%{d1}', 'com'],
  ['%{dr}', 'com.example.email'],
  ['%{d2r}', 'example.email'],
  ['%{l}', 'strong-bad'],
  ['%{l-}', 'strong.bad'],
  ['%{lr}', 'strong-bad'],
  ['%{lr-}', 'bad.strong'],
  ['%{l1r-}', 'strong'],
  ['%{ir}.%{v}._spf.%{d2}', '3.2.0.192.in-addr._spf.example.com'],
  ['%{lr-}.lp._spf.%{d2}', 'bad.strong.lp._spf.example.com'],
  ['%{lr-}.lp.%{ir}.%{v}._spf.%{d2}', 'bad.strong.lp.3.2.0.192.in-addr._spf.example.com'],
  ['%{d2}.trusted-domains.example.net', 'example.com.trusted-domains.example.net'],
  ['%{p}.example.com', 'mx.example.org.example.com'],
])('the RFC 7208 §7.4 example %s expands to %s', async (spec, expanded) => {
  expect(await domain(spec)).toBe(expanded);
});

test('upper-case letters URL-escape everything but the unreserved characters, bytes of UTF-8 included', async () => {
  const v = { ...values, l: 'a b/ü~' };
  expect(await expand(parseDomainSpec('%{L}.example.com'), v)).toBe('a%20b%2F%C3%BC~.example.com');
});

test('explanations may use c, r, t and spaces; %% %_ %- are literals', async () => {
  const tokens = parseMacroString('%{c} via %{r} at %{t}: 100%% %_%-', { spaces: true, explanationLetters: true });
  expect(await expand(tokens, values)).toBe('192.0.2.3 via mx.example.net at 1700000000: 100%  %20');
});

test('a name over 253 characters loses whole labels on the left, and its trailing dot', () => {
  const long = `${'a'.repeat(60)}.${'b'.repeat(60)}.${'c'.repeat(60)}.${'d'.repeat(60)}.example.com.`;
  expect(toQueryName(long)).toBe(`${'b'.repeat(60)}.${'c'.repeat(60)}.${'d'.repeat(60)}.example.com`);
  expect(toQueryName('example.com.')).toBe('example.com');
});

test('a domain-spec of thousands of macros builds no more than its end, and names the same host as a full expansion', async () => {
  const tokens = parseDomainSpec(`${'%{s}.%{d}x'.repeat(5000)}.example.com`);
  const bounded = await expand(tokens, values, DOMAIN_BOUND);
  expect(bounded.length).toBeLessThanOrEqual(2 * DOMAIN_BOUND.chars + 100);
  expect(toQueryName(bounded)).toBe(toQueryName(await expand(tokens, values, { keep: 'tail', chars: Infinity })));
});

test('an explanation is cut after its first 1024 characters', async () => {
  const text = await expand(parseMacroString('%{s} '.repeat(5000), { spaces: true, explanationLetters: true }), values, EXPLANATION_BOUND);
  expect(text).toBe('strong-bad@email.example.com '.repeat(5000).slice(0, EXPLANATION_BOUND.chars));
});
