/**
 * IP addresses as SPF sees them (RFC 7208 §5, §5.6, §7.3): parsed to bytes, an IPv4-mapped
 * IPv6 address (::ffff:a.b.c.d) taken as the IPv4 address it maps, CIDR comparison, and the
 * three spellings the macros need: dotted quad or RFC 5952 text (%{c}), dot-separated bytes
 * or nibbles (%{i}), and the reverse-lookup name (PTR, %{p}).
 *
 * The nibbles of %{i} are upper-case hex: DNS does not care, and the OpenSPF suite's
 * v-macro-ip6 case (and pyspf, the reference) expect it in explanations.
 */
import net from 'node:net';

export interface SpfAddress {
  readonly family: 4 | 6;
  /** 4 or 16 bytes. */
  readonly bytes: Uint8Array;
}

/** Parses an address; IPv4-mapped IPv6 becomes IPv4 (RFC 7208 §5: "MUST still be considered an IPv4 address"). */
export function parseAddress(text: string): SpfAddress | undefined {
  const t = text.trim();
  if (net.isIPv4(t)) return { family: 4, bytes: Uint8Array.from(t.split('.').map(Number)) };
  if (!net.isIPv6(t) || t.includes('%')) return undefined;
  const bytes = ipv6Bytes(t);
  if (!bytes) return undefined;
  const mapped = bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
  return mapped ? { family: 4, bytes: bytes.slice(12) } : { family: 6, bytes };
}

/** RFC 4291 §2.2 text (with an embedded dotted quad allowed) to 16 bytes; undefined if it is not one. */
export function ipv6Bytes(text: string): Uint8Array | undefined {
  if (!net.isIPv6(text) || text.includes('%')) return undefined;
  // An embedded dotted quad (::ffff:1.2.3.4) is the last two groups written in decimal.
  const t = text.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_m, a, b, c, d) => `${((Number(a) << 8) | Number(b)).toString(16)}:${((Number(c) << 8) | Number(d)).toString(16)}`);
  const [head, rest] = t.includes('::') ? t.split('::') : [t, undefined];
  const parse = (s: string) => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
  const left = parse(head);
  const right = rest === undefined ? [] : parse(rest);
  const zeros = rest === undefined ? 0 : 8 - left.length - right.length;
  const all = [...left, ...new Array<number>(Math.max(zeros, 0)).fill(0), ...right];
  if (all.length !== 8 || all.some((g) => !(g >= 0 && g <= 0xffff))) return undefined;
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

/** Whether the first `prefix` bits of a and b agree (a and b of the same length). */
export function inNetwork(a: Uint8Array, b: Uint8Array, prefix: number): boolean {
  if (a.length !== b.length) return false;
  const whole = prefix >> 3;
  for (let i = 0; i < whole; i++) if (a[i] !== b[i]) return false;
  const bits = prefix & 7;
  if (!bits) return true;
  const mask = (0xff << (8 - bits)) & 0xff;
  return (a[whole] & mask) === (b[whole] & mask);
}

/** %{c}: dotted quad, or RFC 5952 compressed lower-case IPv6. */
export function addressText(a: SpfAddress): string {
  if (a.family === 4) return Array.from(a.bytes).join('.');
  const groups = Array.from({ length: 8 }, (_, i) => (a.bytes[2 * i] << 8) | a.bytes[2 * i + 1]);
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/** %{i}: dotted quad, or 32 dot-separated upper-case nibbles. */
export function addressDotted(a: SpfAddress): string {
  if (a.family === 4) return Array.from(a.bytes).join('.');
  return Array.from(a.bytes, (b) => b.toString(16).toUpperCase().padStart(2, '0'))
    .join('')
    .split('')
    .join('.');
}

/** The in-addr.arpa / ip6.arpa name to ask for PTR records. */
export function reverseName(a: SpfAddress): string {
  return `${addressDotted(a).split('.').reverse().join('.')}.${a.family === 4 ? 'in-addr' : 'ip6'}.arpa`.toLowerCase();
}

/** Bytes of an address as the resolver returns it (A or AAAA text). */
export function recordBytes(text: string, family: 4 | 6): Uint8Array | undefined {
  if (family === 4) return net.isIPv4(text) ? Uint8Array.from(text.split('.').map(Number)) : undefined;
  return ipv6Bytes(text);
}
