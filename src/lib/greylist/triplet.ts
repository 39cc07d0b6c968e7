/**
 * The greylisting triplet as postgrey builds it (postgrey 1.37, do_sender_substitutions and
 * do_client_substitutions), so that a site moving from postgrey keeps the same notion of "one
 * sender": the client's network (the /24 of IPv4, the /64 of IPv6, configurable), the sender
 * with BATV, VERP extensions and numbers folded, and the recipient, lower-cased together.
 *
 * Beyond postgrey: SRS0/SRS1 addresses (the Sender Rewriting Scheme of forwarders) keep only
 * their original domain and local-part, so a forwarder's rotating hash and timestamp do not
 * make a new triplet for every message; IPv4-mapped IPv6 clients count as IPv4.
 * Pure functions: no I/O, no failure (an address that is no IP is kept whole as its "network").
 */
import { isIPv4, isIPv6 } from 'node:net';

/** postgrey's sender substitutions, plus SRS. The empty sender (bounces) stays empty. */
export function normaliseSender(sender: string): string {
  const at = sender.indexOf('@');
  if (at < 0) return sender;
  let user = sender.slice(0, at);
  const domain = sender.slice(at + 1);
  // BATV: prvs=tag-val=loc-core, sometimes seen as prvs=loc-core=tag-val.
  if (/^prvs=/i.test(user)) {
    const parts = user.split('=');
    if (parts.length === 3) {
      const tag = /^[0-9a-z]{10}/;
      if (tag.test(parts[1]) && !tag.test(parts[2])) user = parts[2];
      else if (tag.test(parts[2]) && !tag.test(parts[1])) user = parts[1];
      else user = parts[2];
    }
  }
  // SRS0=hash=tt=orig-domain=orig-local; SRS1=hash=forwarder==hash=tt=orig-domain=orig-local.
  const srs = /^SRS[01][=+-].*=([^=]+)=([^=]+)$/i.exec(user);
  if (srs) user = `SRS=${srs[1]}=${srs[2]}`;
  // VERP extensions, then every run of digits standing alone as a word (Perl's \b\d+\b).
  user = user.replace(/\+.*/, '').replace(/(?<![A-Za-z0-9_])\d+(?![A-Za-z0-9_])/g, '#');
  return `${user}@${domain}`;
}

/** The network part of the client address: the first ipv4Bits of IPv4, ipv6Bits of IPv6. */
export function clientNetwork(address: string, ipv4Bits: number, ipv6Bits: number): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  const ip = mapped ? mapped[1] : address;
  if (isIPv4(ip)) {
    const n = ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
    const masked = ipv4Bits === 0 ? 0 : Number((BigInt(n) >> BigInt(32 - ipv4Bits)) << BigInt(32 - ipv4Bits));
    return [24, 16, 8, 0].map((s) => (masked >>> s) & 255).join('.');
  }
  if (isIPv6(ip)) {
    const words = expandIPv6(ip);
    let v = words.reduce((acc, w) => (acc << 16n) | BigInt(w), 0n);
    v = ipv6Bits === 0 ? 0n : (v >> BigInt(128 - ipv6Bits)) << BigInt(128 - ipv6Bits);
    const out: string[] = [];
    for (let i = 7; i >= 0; i--) out.push(((v >> BigInt(i * 16)) & 0xffffn).toString(16));
    return compressIPv6(out);
  }
  return address;
}

/** The triplet as postgrey's key: "network/sender/recipient", lower case. */
export function tripletKey(network: string, sender: string, recipient: string): string {
  return `${network}/${normaliseSender(sender)}/${recipient}`.toLowerCase();
}

function expandIPv6(ip: string): number[] {
  let text = ip;
  // A trailing dotted quad (::ffff:1.2.3.4 with other prefixes, or 64:ff9b::1.2.3.4).
  const quad = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (quad) {
    const [a, b, c, d] = quad.slice(1).map(Number);
    text = `${text.slice(0, quad.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const fill = tail === undefined ? [] : new Array(8 - h.length - t.length).fill('0');
  return [...h, ...fill, ...t].map((w) => Number.parseInt(w || '0', 16));
}

/** RFC 5952 text: the longest run of two or more zero words becomes "::". */
function compressIPv6(words: string[]): string {
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === '0') j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return words.join(':');
  return `${words.slice(0, best).join(':')}::${words.slice(best + bestLen).join(':')}`;
}
