/**
 * The address forms SPF needs (RFC 7208 §5, §7.3; RFC 5952 for %{c}).
 */
import { addressDotted, addressText, inNetwork, ipv6Bytes, parseAddress, reverseName } from '../../../src/lib/spf/address';

test.each([
  ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
  ['2001:DB8::0001', '2001:db8::1'],
  ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
  ['0:0:0:0:0:0:0:0', '::'],
  ['1:0:0:0:0:0:0:0', '1::'],
  ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'],
  ['::1.2.3.4', '::102:304'],
])('%s is written %s (RFC 5952)', (input, text) => {
  expect(addressText(parseAddress(input)!)).toBe(text);
});

test('an IPv4-mapped IPv6 address, dotted or in hex, is an IPv4 address', () => {
  for (const t of ['::ffff:192.0.2.1', '::FFFF:c000:201']) expect(parseAddress(t)).toEqual({ family: 4, bytes: Uint8Array.from([192, 0, 2, 1]) });
});

test('what is no address, or has a zone index, is not parsed', () => {
  for (const t of ['', '1.2.3', '1.2.3.04x', 'fe80::1%eth0', ':1::2::3', 'example.com']) expect(parseAddress(t)).toBeUndefined();
  expect(ipv6Bytes(':CAFE::BABE')).toBeUndefined();
});

test('%{i} and the reverse name of an IPv6 address use its 32 nibbles', () => {
  const a = parseAddress('2001:db8::cb01')!;
  expect(addressDotted(a)).toBe('2.0.0.1.0.D.B.8.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.C.B.0.1');
  expect(reverseName(a)).toBe('1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa');
  expect(reverseName(parseAddress('192.0.2.3')!)).toBe('3.2.0.192.in-addr.arpa');
});

test('prefixes compare whole and partial bytes, /0 matches everything of the family', () => {
  const a = Uint8Array.from([192, 0, 2, 129]);
  expect(inNetwork(a, Uint8Array.from([192, 0, 2, 128]), 25)).toBe(true);
  expect(inNetwork(a, Uint8Array.from([192, 0, 2, 0]), 25)).toBe(false);
  expect(inNetwork(a, Uint8Array.from([10, 0, 0, 0]), 0)).toBe(true);
  expect(inNetwork(a, new Uint8Array(16), 0)).toBe(false);
});
