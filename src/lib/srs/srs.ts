/**
 * The Sender Rewriting Scheme engine: forward (envelope sender -> SRS address of our domain) and
 * reverse (SRS address -> the address it stands for), pure and synchronous. The clock is passed in.
 *
 * The scheme is Shevek's "Guarded" SRS as libsrs2, Mail::SRS (Mail::SRS::Guarded) and postsrsd
 * implement it, matched by the interop tests in test/lib/srs/ against Mail::SRS and postsrsd:
 *   SRS0<sep>HASH=TT=HOST=USER@ours      HASH over (TT, HOST, USER)
 *   SRS1<sep>HASH=FWDHOST==HASH0=...@ours HASH over (FWDHOST, "=HASH0=...")
 * <sep> is "=", "+" or "-" (configurable); every other separator is "=". HASH is the first
 * `hashLength` characters of base64(HMAC-SHA1(secret, lowercased fields concatenated)), checked
 * case-insensitively (mail systems fold the local part) and with "-" and "_" taken for "+" and
 * "/" (postsrsd 2.2.6 and later write base64url); TT is the day number modulo 1024 in two
 * base32 characters. An SRS0 address of another forwarder is kept, not re-signed, and becomes
 * an SRS1 address pointing back at that forwarder (so a bounce goes there to be checked).
 *
 * Addresses come and go in Postfix's external form: a local part that is no dot-atom is quoted
 * ("jo smith"@x), hashed without its quotes, and an answer that needs quotes is quoted whole.
 * A domain may be an A-label or a U-label (SMTPUTF8), judged by its A-label form. A local part
 * with "@", "%" or "!" is left alone: Postfix would refuse the bounce to its SRS address.
 *
 * The first secret signs; every secret verifies (rotation without bouncing mail in flight).
 * Results are data: rewritten, unchanged (with why) or invalid (with why); nothing throws on
 * bad input. Settings come from services.srs (src/config/main-schema.ts).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { domainToASCII } from 'node:url';

export interface SrsSettings {
  /** The domain of the addresses we make, and the only one we reverse. */
  readonly domain: string;
  /** First signs, all verify. Must not be empty. */
  readonly secrets: readonly string[];
  /** Characters of base64 hash we write. */
  readonly hashLength: number;
  /** Fewest hash characters we accept (Mail::SRS HashMin, postsrsd -N). */
  readonly hashMin: number;
  /** Days an SRS0 address stays valid (Mail::SRS MaxAge). */
  readonly maxAgeDays: number;
  /** The separator after SRS0/SRS1. */
  readonly separator: '=' | '+' | '-';
  /** Senders of these domains are left alone ("example.org", or ".example.org" for its subdomains). */
  readonly localDomains: readonly string[];
  readonly excludeDomains: readonly string[];
  /** Milliseconds since the epoch; tests pass a fixed clock. */
  readonly now: () => number;
}

export type SrsResult =
  | { readonly kind: 'rewritten'; readonly address: string }
  /** Not for us to rewrite (null sender, local domain, not an SRS address...): not found. */
  | { readonly kind: 'unchanged'; readonly reason: SrsSkipReason }
  /** Looks like ours but does not verify: not found too, never rewritten. */
  | { readonly kind: 'invalid'; readonly reason: SrsInvalidReason };

export type SrsSkipReason =
  | 'null-sender'
  | 'no-domain'
  | 'routing-characters'
  | 'not-a-public-domain'
  | 'local-domain'
  | 'excluded-domain'
  | 'our-domain'
  | 'not-our-domain'
  | 'not-srs';
export type SrsInvalidReason = 'malformed' | 'not-a-public-domain' | 'bad-hash' | 'bad-timestamp' | 'expired';

export interface SrsEngine {
  forward(address: string): SrsResult;
  reverse(address: string): SrsResult;
}

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const DAY_MS = 86_400_000;
/** Two base32 characters: the day counter wraps every 1024 days. */
const TICK_SLOTS = 1024;
const SRS0 = /^SRS0[-+=]/i;
const SRS1 = /^SRS1[-+=]/i;

export function createSrsEngine(settings: SrsSettings): SrsEngine {
  if (settings.secrets.length === 0) throw new TypeError('SRS needs at least one secret');
  const domain = domainKey(settings.domain);
  const local = domainMatcher(settings.localDomains);
  const excluded = domainMatcher(settings.excludeDomains);

  const hash = (secret: string, fields: readonly string[]): string => hmac(secret, fields).slice(0, settings.hashLength);

  /**
   * Any secret, compared in one folded form (case, and base64url for base64) and in constant
   * time: the reply must not tell an attacker how many characters of a guess were right.
   */
  const verify = (given: string, fields: readonly string[]): boolean => {
    if (given.length < settings.hashMin || given.length > 27) return false;
    const g = Buffer.from(foldHash(given));
    let ok = false;
    for (const s of settings.secrets) {
      const v = Buffer.from(foldHash(hmac(s, fields).slice(0, given.length)));
      if (v.length === g.length && timingSafeEqual(v, g)) ok = true;
    }
    return ok;
  };

  const timestampNow = (): string => {
    const day = Math.floor(settings.now() / DAY_MS);
    return BASE32[(day >> 5) & 31]! + BASE32[day & 31]!;
  };

  const timestampCheck = (tt: string): SrsInvalidReason | undefined => {
    if (tt.length !== 2) return 'bad-timestamp';
    const hi = BASE32.indexOf(tt[0]!.toUpperCase());
    const lo = BASE32.indexOf(tt[1]!.toUpperCase());
    if (hi < 0 || lo < 0) return 'bad-timestamp';
    const then = hi * 32 + lo;
    const today = Math.floor(settings.now() / DAY_MS) % TICK_SLOTS;
    const age = (today - then + TICK_SLOTS) % TICK_SLOTS;
    return age <= settings.maxAgeDays ? undefined : 'expired';
  };

  return {
    forward(address) {
      const parts = splitAddress(address);
      if (parts === 'null') return { kind: 'unchanged', reason: 'null-sender' };
      if (!parts) return { kind: 'unchanged', reason: 'no-domain' };
      const [user, host] = parts;
      const lhost = domainKey(host);
      if (lhost === domain) return { kind: 'unchanged', reason: 'our-domain' };
      // Postfix's smtpd refuses mail to "x%y@us", "x!y@us" and "x@y"@us as relaying (454, with
      // the default allow_percent_hack, swap_bangpath and resolve_dequoted_address): an SRS
      // address holding one could never take its bounce. Left alone, the bounce goes straight
      // to the sender.
      if (/[@%!]/.test(user)) return { kind: 'unchanged', reason: 'routing-characters' };
      // An address literal, localhost or a one-label name is no outside sender: signed, it would
      // reverse into a recipient on our own network (recipient_canonical_maps), an open relay.
      // The host as written (lhost lost its trailing dot: "x.example.." would pass as public).
      if (!isPublicDomain(host.toLowerCase())) return { kind: 'unchanged', reason: 'not-a-public-domain' };
      if (local(lhost)) return { kind: 'unchanged', reason: 'local-domain' };
      if (excluded(lhost)) return { kind: 'unchanged', reason: 'excluded-domain' };
      const sep = settings.separator;
      const sign = (fields: readonly string[]) => hash(settings.secrets[0]!, fields);
      if (SRS1.test(user)) {
        // Another forwarder's SRS1: keep where it points, sign it anew (Mail::SRS::Guarded compile).
        const f = splitN(user.slice(5), '=', 3);
        // One that points at no outside domain would not reverse (see reverse): signed as SRS0 below.
        if (f.length === 3 && f[1] && f[2] && isPublicDomain(f[1].toLowerCase())) return rewritten(`SRS1${sep}${sign([f[1], f[2]])}=${f[1]}=${f[2]}`, settings.domain);
      } else if (SRS0.test(user)) {
        // Keep its separator: the SRS0 host reverses its own address (hence the "==").
        const rest = user.slice(4);
        return rewritten(`SRS1${sep}${sign([host, rest])}=${host}=${rest}`, settings.domain);
      }
      const tt = timestampNow();
      return rewritten(`SRS0${sep}${sign([tt, host, user])}=${tt}=${host}=${user}`, settings.domain);
    },

    reverse(address) {
      const parts = splitAddress(address);
      if (parts === 'null') return { kind: 'unchanged', reason: 'null-sender' };
      if (!parts) return { kind: 'unchanged', reason: 'no-domain' };
      const [user, host] = parts;
      if (domainKey(host) !== domain) return { kind: 'unchanged', reason: 'not-our-domain' };
      if (SRS0.test(user)) {
        const f = splitN(user.slice(5), '=', 4);
        if (f.length !== 4 || !f[2] || !f[3]) return { kind: 'invalid', reason: 'malformed' };
        const [h, tt, shost, suser] = f as [string, string, string, string];
        if (!isPublicDomain(shost.toLowerCase())) return { kind: 'invalid', reason: 'not-a-public-domain' };
        if (!verify(h, [tt, shost, suser])) return { kind: 'invalid', reason: 'bad-hash' };
        const bad = timestampCheck(tt);
        if (bad) return { kind: 'invalid', reason: bad };
        return rewritten(suser, shost);
      }
      if (SRS1.test(user)) {
        const f = splitN(user.slice(5), '=', 3);
        if (f.length !== 3 || !f[1] || !f[2]) return { kind: 'invalid', reason: 'malformed' };
        const [h, shost, suser] = f as [string, string, string];
        if (!isPublicDomain(shost.toLowerCase())) return { kind: 'invalid', reason: 'not-a-public-domain' };
        if (!verify(h, [shost, suser])) return { kind: 'invalid', reason: 'bad-hash' };
        return rewritten(`SRS0${suser}`, shost);
      }
      return { kind: 'unchanged', reason: 'not-srs' };
    },
  };
}

/** Mail systems fold the case of a local part; postsrsd >= 2.2.6 writes "-" and "_" for "+" and "/". */
function foldHash(h: string): string {
  return h.replace(/\+/g, '-').replace(/\//g, '_').toLowerCase();
}

/**
 * A DNS name of two labels or more, not localhost nor an address. A U-label name (SMTPUTF8) is
 * judged by its A-label form, as the resolver will see it: "ｌｏｃａｌｈｏｓｔ" maps to localhost.
 */
function isPublicDomain(host: string): boolean {
  const name = asciiDomain(host).replace(/\.$/, '');
  return /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$/.test(name) && !/(^|\.)localhost$/.test(name) && !/^[0-9.]+$/.test(name);
}

/** A domain as compared with the configured ones: lower case, A-labels, no trailing dot. */
function domainKey(host: string): string {
  return asciiDomain(host.toLowerCase()).replace(/\.$/, '');
}

/** The A-label form of a domain with non-ASCII labels ("" when it is no valid IDN); others as they are. */
function asciiDomain(host: string): string {
  return /^\p{ASCII}*$/u.test(host) ? host : domainToASCII(host);
}

/** base64 of HMAC-SHA1 over the lowercased fields, concatenated (Mail::SRS hash_create). */
function hmac(secret: string, fields: readonly string[]): string {
  const h = createHmac('sha1', secret);
  for (const f of fields) h.update(asciiLower(f));
  return h.digest('base64');
}

/** Perl's lc on a byte string: ASCII letters only, so UTF-8 local parts hash as Mail::SRS hashes them. */
function asciiLower(s: string): string {
  return s.replace(/[A-Z]+/g, (m) => m.toLowerCase());
}

/**
 * [local part unquoted, domain] split at the last "@"; 'null' for the null sender; undefined
 * without a domain or a local part. Postfix looks addresses up in external form, with a local
 * part that is no dot-atom quoted ("jo smith"@example.org): the fields and the hash are of the
 * local part itself, and what we answer is quoted again (`rewritten`).
 */
function splitAddress(address: string): [string, string] | 'null' | undefined {
  const a = address.startsWith('<') && address.endsWith('>') ? address.slice(1, -1) : address;
  if (a === '') return 'null';
  const at = a.lastIndexOf('@');
  if (at <= 0 || at === a.length - 1) return undefined;
  let user = a.slice(0, at);
  // The s flag: Postfix also escapes a CR, which "." alone does not match.
  if (user.length >= 2 && user.startsWith('"') && user.endsWith('"')) user = user.slice(1, -1).replace(/\\(.)/gs, '$1');
  return user === '' ? undefined : [user, a.slice(at + 1)];
}

/** RFC 5322 dot-atom (RFC 6531: UTF-8 too): a local part Postfix reads without quotes. */
const DOT_ATOM = /^[\w!#$%&'*+/=?^`{|}~\u0080-\uffff-]+(?:\.[\w!#$%&'*+/=?^`{|}~\u0080-\uffff-]+)*$/;

/**
 * An answer in the external form Postfix parses a table's result in: a local part that is no
 * dot-atom (a space, an "@", a quote) is quoted, or Postfix splits the answer into several
 * addresses ("multi-valued ... entry") and takes the first, a mangled sender.
 */
function rewritten(local: string, domain: string): SrsResult {
  const quoted = DOT_ATOM.test(local) ? local : `"${local.replace(/["\\]/g, '\\$&')}"`;
  return { kind: 'rewritten', address: `${quoted}@${domain}` };
}

/** Perl's split with a limit: at most n fields, the last keeps the remaining separators. */
function splitN(s: string, sep: string, n: number): string[] {
  const out: string[] = [];
  let from = 0;
  while (out.length < n - 1) {
    const i = s.indexOf(sep, from);
    if (i < 0) break;
    out.push(s.slice(from, i));
    from = i + sep.length;
  }
  out.push(s.slice(from));
  return out;
}

/** "example.org" matches itself; ".example.org" matches its subdomains (postsrsd -X). */
function domainMatcher(list: readonly string[]): (host: string) => boolean {
  const exact = new Set<string>();
  const suffixes: string[] = [];
  for (const d of list) {
    if (d.startsWith('.')) suffixes.push(`.${domainKey(d.slice(1))}`);
    else exact.add(domainKey(d));
  }
  return (host) => exact.has(host) || suffixes.some((s) => host.endsWith(s));
}
