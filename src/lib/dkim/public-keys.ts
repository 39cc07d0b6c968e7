/**
 * DKIM public keys for verification (RFC 6376 3.6.1, RFC 8301, RFC 8463): the key record
 * comes through our resolver (and its TTL cache), is checked by mailauth's key-record rules
 * in its strict mode, and is parsed into a KeyObject once per record text.
 *
 * Parsing a record is expensive next to using it: mailauth validates it, builds a KeyObject,
 * exports it to PEM, and crypto parses the PEM again on every verify. Doing that per message
 * was 14 % of the inbound path's CPU (bench/README.md). The memo is keyed by the record's
 * text, so a changed record is a new entry and DNS TTLs still decide what is current; a
 * broken record's verdict is remembered the same way. DNS failures are never remembered.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { domainToASCII } from 'node:url';
import type { DnsResolver } from '../dns';

/** What mailauth's key-record parser makes of a record. */
export interface PublishedKey {
  /** PEM. */
  readonly publicKey: string;
  readonly keyType: 'rsa' | 'ed25519';
  readonly modulusLength?: number;
  readonly flags: string[];
  readonly testing: boolean;
}

/** mailauth's key-record parser: throws an Error with a code (EINVALIDVAL, ESHORTKEY, ...) for a record it rejects. */
export const { getPublicKey } = require('mailauth/lib/tools') as {
  getPublicKey(
    type: 'DKIM',
    name: string,
    minBitLength: number,
    resolver: (name: string, type: string) => Promise<unknown[]>,
    options: { strict: boolean; hashAlgo: string },
  ): Promise<PublishedKey>;
};

export interface DkimPublicKey {
  readonly key: KeyObject;
  readonly keyType: 'rsa' | 'ed25519';
  /** Key record t= flags: "y" testing, "s" no subdomains in i=. */
  readonly flags: readonly string[];
}

export type KeyLookup =
  | { readonly kind: 'key'; readonly key: DkimPublicKey }
  | { readonly kind: 'not-found' }
  | { readonly kind: 'temperror'; readonly reason: string }
  /** mailauth's key error code (EINVALIDVAL, ESHORTKEY, ...) and whether p= is empty. */
  | { readonly kind: 'invalid'; readonly code: string; readonly revoked: boolean };

/** Enough for every selector a busy inbound MX sees in a TTL; the oldest entry goes first. */
const MAX_ENTRIES = 1024;

export class DkimKeyCache {
  private readonly parsed = new Map<string, KeyLookup>();

  async lookup(resolver: DnsResolver, domain: string, selector: string, opts: { minKeyBits: number; hashAlgo: string; signal?: AbortSignal }): Promise<KeyLookup> {
    const name = `${selector}._domainkey.${domain}`;
    // RFC 8616 3: a U-label is looked up as its A-label.
    const r = await resolver.query(domainToASCII(name) || name, 'TXT', opts.signal);
    if (r.kind === 'nxdomain' || r.kind === 'nodata' || (r.kind === 'answer' && !r.records.length)) return { kind: 'not-found' };
    if (r.kind !== 'answer') return { kind: 'temperror', reason: r.reason };
    const record = r.records[0].join('');
    const memo = `${opts.minKeyBits}:${opts.hashAlgo}:${record}`;
    const known = this.parsed.get(memo);
    if (known) return known;
    const result = await parse(name, record, opts);
    if (this.parsed.size >= MAX_ENTRIES) this.parsed.delete(this.parsed.keys().next().value!);
    this.parsed.set(memo, result);
    return result;
  }
}

async function parse(name: string, record: string, opts: { minKeyBits: number; hashAlgo: string }): Promise<KeyLookup> {
  try {
    const k = await getPublicKey('DKIM', name, opts.minKeyBits, async () => [[record]], { strict: true, hashAlgo: opts.hashAlgo });
    return { kind: 'key', key: { key: createPublicKey(k.publicKey), keyType: k.keyType, flags: k.flags } };
  } catch (err) {
    // RFC 6376 3.6.1: "An empty value means that this public key has been revoked."
    return { kind: 'invalid', code: String((err as { code?: string }).code ?? 'EINVALIDVAL'), revoked: /(^|;)\s*p\s*=\s*(;|$)/.test(record) };
  }
}
