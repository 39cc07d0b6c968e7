/**
 * DKIM verification (RFC 6376 6, RFC 8301, RFC 8463) of every signature of a message, on the
 * header fields parsed once by Message and one streaming pass over the body:
 *
 * - the field is checked first (signature-tags.ts): a broken one costs no DNS query;
 * - one body hash per distinct canonicalization, hash and l= (our canonicalizer, the one the
 *   signer uses, tested against Mail::DKIM and dkimpy), then the header hash and the
 *   signature against a key parsed once per record (lib/dkim/public-keys.ts);
 * - one result per signature with a reason code (authentication-results.ts DkimReason):
 *   key not found, revoked key (empty p=), unusable key, t=s identity mismatch, expired x=
 *   and From not signed are permerror (RFC 6376 6.1: PERMFAIL), not neutral;
 * - rsa-sha1 and keys under minKeyBits are `policy`, never a pass (RFC 8301 3.1, 3.2);
 * - a t=y key is reported as test mode (RFC 6376 3.6.1);
 * - at most maxSignatures signatures are verified: the rest are reported neutral, unverified,
 *   so a message with a thousand signatures costs no more than one with ten.
 *
 * mailauth did this work until the benchmark showed its per-message key parsing and its own
 * pass over the message at about a quarter of the inbound path's CPU (bench/README.md); its
 * tag-list parser and key-record rules are still the ones used here.
 */
import type { DkimReason, DkimResult, DkimSignatureResult } from '../authentication-results';
import { bodyKey, hashBodies, type BodyHash } from './body-hash';
import type { DkimKeyCache } from './public-keys';
import { tagsOf } from './tag-list';
import { signedHeaderData, verifySignedData } from './verification';
import type { DnsResolver } from '../dns';
import type { Message } from '../../transaction/message';
import { checkSignature, idsOf, type CheckedSignature } from './signature-tags';

export interface DkimVerifyOptions {
  readonly resolver: DnsResolver;
  readonly keys: DkimKeyCache;
  readonly maxSignatures: number;
  readonly minKeyBits: number;
  /** What a passing l= signature with unsigned bytes after its limit gets. */
  readonly partialBody: 'pass' | 'neutral';
  readonly now?: Date;
  readonly signal?: AbortSignal;
}

export interface DkimVerification {
  readonly signatures: DkimSignatureResult[];
}

const KEY_COMMENTS: Record<string, string> = {
  EINVALIDVER: 'unknown key version',
  EINVALIDTYPE: 'unknown key type',
  EINVALIDHASH: 'inappropriate hash algorithm',
  EINVALIDSERVICE: 'key not for email',
};

export async function verifyDkim(message: Message, opts: DkimVerifyOptions): Promise<DkimVerification> {
  const fields = message.get('dkim-signature');
  const now = opts.now ?? new Date();
  const checked = fields.slice(0, opts.maxSignatures).map((f) => checkSignature(f, now));
  const bodies = await hashBodies(
    message,
    checked.filter((c): c is CheckedSignature => 'field' in c),
    opts.signal,
  );
  const signatures: DkimSignatureResult[] = [];
  for (const c of checked) signatures.push('field' in c ? await verifyOne(message, c, bodies.get(bodyKey(c))!, opts) : { ...c, testing: false });
  for (const f of fields.slice(opts.maxSignatures)) {
    signatures.push({
      ...idsOf(tagsOf(f).parsed),
      result: 'neutral',
      reason: 'signature-limit',
      testing: false,
      comment: `not verified: more than ${opts.maxSignatures} signatures`,
    });
  }
  return { signatures };
}

async function verifyOne(message: Message, c: CheckedSignature, body: BodyHash, opts: DkimVerifyOptions): Promise<DkimSignatureResult> {
  const make = (result: DkimResult, reason: DkimReason, comment?: string, testing = false): DkimSignatureResult => ({
    d: c.d,
    s: c.s,
    a: c.a,
    b: c.b,
    i: c.i,
    result,
    reason,
    testing,
    ...(comment ? { comment } : {}),
  });
  // RFC 6376 6.1.3 step 3 is a PERMFAIL, which RFC 8601 reports as "fail".
  if (body.digest !== c.bodyHash) return make('fail', 'body-hash-mismatch');
  // RFC 8301 3.1: "rsa-sha1 MUST NOT be used for signing or verifying".
  if (c.hashAlgo === 'sha1') return make('policy', 'rsa-sha1');

  const found = await opts.keys.lookup(opts.resolver, c.d, c.s, { minKeyBits: opts.minKeyBits, hashAlgo: c.hashAlgo, signal: opts.signal });
  switch (found.kind) {
    case 'not-found':
      return make('permerror', 'key-not-found');
    case 'temperror':
      return make('temperror', 'dns-temperror', `DNS failure: ${found.reason}`);
    case 'invalid':
      if (found.code === 'ESHORTKEY') return make('policy', 'weak-key');
      if (found.code === 'EINVALIDVAL') return make('permerror', found.revoked ? 'key-revoked' : 'key-invalid');
      return make('permerror', 'key-invalid', KEY_COMMENTS[found.code]);
  }
  const { key, keyType, flags } = found.key;
  const testing = flags.includes('y');
  // RFC 6376 6.1.2 step 8
  if (keyType !== c.signAlgo) return make('permerror', 'key-invalid', 'inappropriate key algorithm', testing);
  // Key t=s: "the "i=" domain MUST NOT be a subdomain of "d=""
  if (flags.includes('s') && c.identityDomain !== undefined && c.identityDomain.toLowerCase().replace(/\.$/, '') !== c.d.toLowerCase().replace(/\.$/, ''))
    return make('permerror', 'key-identity-mismatch', undefined, testing);

  const data = signedHeaderData(message.fields, c.signedNames, c.field, c.headerCanon);
  let valid: boolean;
  try {
    valid = verifySignedData(c.signAlgo, data, key, c.b);
  } catch (err) {
    return make('neutral', 'signature-syntax', (err as Error).message, testing);
  }
  if (!valid) return make('fail', 'bad-signature', undefined, testing);
  if (body.total !== undefined && body.total > body.hashed) return make(opts.partialBody, 'partial-body', `${body.total - body.hashed} body bytes not signed`, testing);
  return make('pass', 'ok', undefined, testing);
}
