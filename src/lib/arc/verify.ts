/**
 * The cryptographic half of ARC validation (RFC 8617 5.2 steps 4 and 6) on a chain whose
 * structure chain.ts accepted: the newest ARC-Message-Signature (its body hash first, so a
 * changed body costs no DNS query; then its header hash, as a DKIM signature with the AMS's
 * own c=), then every ARC-Seal from the newest down, each over the ARC sets 1..i in order,
 * relaxed header canonicalization (5.1.1), its own b= value removed.
 *
 * Nothing else is verified: no DKIM-Signature, no older AMS. At most N+1 signatures for N
 * sets, and at most that many key lookups (one per distinct selector and domain), through
 * our resolver and the key cache that dkim-verify uses (lib/dkim/public-keys.ts, minKeyBits
 * applies). The AMS key and the newest seal's key are looked up first; the older seals'
 * keys only when those two verified.
 *
 * The signal: every DNS query gets it, and it is checked before and after each lookup,
 * before each signature check and between body chunks, so an aborted stage starts no
 * further lookup and does no further crypto: the promise rejects with the signal's reason.
 * (A lookup already in flight is the resolver's, shared with other callers: it ends with
 * its own timeout and retries.) Every other failure is a result
 * (pass or fail with a reason; RFC 8617 has no temperror, so a DNS failure is a fail).
 */
import type { DkimKeyCache, DkimPublicKey } from '../dkim/public-keys';
import { bodyKey, hashBodies } from '../dkim/body-hash';
import { canonicalizeHeader } from '../dkim/canonicalization';
import { signedHeaderData, verifySignedData } from '../dkim/verification';
import type { DnsResolver } from '../dns';
import type { Message } from '../../transaction/message';
import type { ArcSet, MessageSignature } from './chain';

export interface ArcVerifyOptions {
  readonly resolver: DnsResolver;
  readonly keys: DkimKeyCache;
  readonly minKeyBits: number;
  /** dkimVerify.partialBody: an AMS l= that leaves body text unsigned fails unless this is pass. */
  readonly partialBody: 'pass' | 'neutral';
  readonly signal: AbortSignal;
}

export type ArcVerdict = { readonly result: 'pass' } | { readonly result: 'fail'; readonly reason: string };

class KeyProblem extends Error {}

export async function verifyChain(message: Message, sets: readonly ArcSet[], ams: MessageSignature, opts: ArcVerifyOptions): Promise<ArcVerdict> {
  const { signal } = opts;
  const n = sets.length;
  const request = { bodyCanon: ams.bodyCanon, hashAlgo: 'sha256' as const, ...(ams.bodyLength !== undefined ? { bodyLength: ams.bodyLength } : {}) };
  const body = (await hashBodies(message, [request], signal)).get(bodyKey(request))!;
  if (body.digest !== ams.bodyHash) return { result: 'fail', reason: `i=${n} AMS body hash mismatch` };
  // Text appended after the AMS's l= limit is nobody's: as for DKIM, it is trusted only when the bank says so.
  if (opts.partialBody !== 'pass' && body.total !== undefined && body.total > body.hashed)
    return { result: 'fail', reason: `i=${n} AMS l= leaves ${body.total - body.hashed} body bytes unsigned` };

  const lookups = new Map<string, Promise<DkimPublicKey>>();
  const key = (d: string, s: string, algo: 'rsa' | 'ed25519') => {
    const name = `${s}._domainkey.${d}`;
    let p = lookups.get(name);
    if (!p) lookups.set(name, (p = lookupKey(opts, d, s)));
    const checkedKey = p.then((k) => {
      if (k.keyType !== algo) throw new KeyProblem(`inappropriate key algorithm for ${name}`);
      return k;
    });
    // Looked up ahead of use: a failure is reported when (if) its signature is checked, and
    // is not an unhandled rejection when an earlier signature already failed.
    checkedKey.catch(() => undefined);
    return checkedKey;
  };
  const sealKey = (set: ArcSet) => key(set.sealTags.raw.get('d')!, set.sealTags.raw.get('s')!, set.sealAlgo);

  try {
    const amsKey = key(ams.d, ams.s, ams.signAlgo);
    const newestSealKey = sealKey(sets[n - 1]);
    const data = signedHeaderData(message.fields, ams.signedNames, ams.field, ams.headerCanon);
    if (!checked(ams.signAlgo, data, await amsKey, ams.b, signal)) return { result: 'fail', reason: `i=${n} AMS signature invalid` };
    if (!checked(sets[n - 1].sealAlgo, sealData(sets, n), await newestSealKey, sealValue(sets[n - 1]), signal)) return { result: 'fail', reason: `i=${n} AS signature invalid` };
    const older = sets.slice(0, n - 1).map((set) => sealKey(set));
    for (let i = n - 1; i >= 1; i--) {
      if (!checked(sets[i - 1].sealAlgo, sealData(sets, i), await older[i - 1], sealValue(sets[i - 1]), signal)) return { result: 'fail', reason: `i=${i} AS signature invalid` };
    }
  } catch (err) {
    if (err instanceof KeyProblem) return { result: 'fail', reason: err.message };
    throw err;
  }
  return { result: 'pass' };
}

/** The public-key check, unless the stage was aborted meanwhile; a signature crypto cannot read is invalid. */
function checked(algo: 'rsa' | 'ed25519', data: Buffer, key: DkimPublicKey, b: string, signal: AbortSignal): boolean {
  signal.throwIfAborted();
  try {
    return verifySignedData(algo, data, key.key, b);
  } catch {
    return false;
  }
}

async function lookupKey(opts: ArcVerifyOptions, d: string, s: string): Promise<DkimPublicKey> {
  opts.signal.throwIfAborted();
  const name = `${s}._domainkey.${d}`;
  const found = await opts.keys.lookup(opts.resolver, d, s, { minKeyBits: opts.minKeyBits, hashAlgo: 'sha256', signal: opts.signal });
  // The resolver answers an aborted query with a temperror: that is the abort, not a result.
  opts.signal.throwIfAborted();
  switch (found.kind) {
    case 'key':
      return found.key;
    case 'not-found':
      throw new KeyProblem(`no key for ${name}`);
    case 'temperror':
      throw new KeyProblem(`DNS failure for ${name}: ${found.reason}`);
    case 'invalid':
      throw new KeyProblem(found.code === 'ESHORTKEY' ? `weak key for ${name}` : `unusable key for ${name}`);
  }
}

/** RFC 8617 5.1.1: AAR, AMS, AS of sets 1..i, relaxed; the i-th seal without its b= value and its CRLF. */
function sealData(sets: readonly ArcSet[], i: number): Buffer {
  const parts: Buffer[] = [];
  for (const set of sets.slice(0, i - 1))
    parts.push(canonicalizeHeader(set.aar.raw, 'relaxed'), canonicalizeHeader(set.ams.raw, 'relaxed'), canonicalizeHeader(set.seal.raw, 'relaxed'));
  const last = sets[i - 1];
  parts.push(canonicalizeHeader(last.aar.raw, 'relaxed'), canonicalizeHeader(last.ams.raw, 'relaxed'), signedHeaderData([], [], last.seal, 'relaxed'));
  return Buffer.concat(parts);
}

function sealValue(set: ArcSet): string {
  return String(set.sealTags.parsed.b?.value ?? '');
}
