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
import { createHash, verify as cryptoVerify, type Hash } from 'node:crypto';
import type { DkimReason, DkimResult, DkimSignatureResult } from '../../lib/authentication-results';
import { BodyCanonicalizer, canonicalizeHeader } from '../../lib/dkim/canonicalization';
import type { DkimKeyCache } from '../../lib/dkim/public-keys';
import { selectHeaderFields } from '../../lib/dkim/signature';
import type { DnsResolver } from '../../lib/dns';
import type { Message } from '../../transaction/message';
import { checkSignature, idsOf, tagsOf, type CheckedSignature } from './signature-tags';

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

interface BodyHash {
  readonly hash: Hash;
  readonly limit: number;
  hashed: number;
  digest?: string;
  /** Canonical body octets in all, past any l= limit. */
  total?: number;
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
  const bodies = await hashBodies(message, checked.filter((c): c is CheckedSignature => 'field' in c), opts.signal);
  const signatures: DkimSignatureResult[] = [];
  for (const c of checked) signatures.push('field' in c ? await verifyOne(message, c, bodies.get(bodyKey(c))!, opts) : { ...c, testing: false });
  for (const f of fields.slice(opts.maxSignatures)) {
    signatures.push({ ...idsOf(tagsOf(f).parsed), result: 'neutral', reason: 'signature-limit', testing: false, comment: `not verified: more than ${opts.maxSignatures} signatures` });
  }
  return { signatures };
}

function bodyKey(c: CheckedSignature): string {
  return `${c.bodyCanon}:${c.hashAlgo}:${c.bodyLength ?? ''}`;
}

/** Every body hash the signatures need, in one read of the body. */
async function hashBodies(message: Message, sigs: readonly CheckedSignature[], signal?: AbortSignal): Promise<Map<string, BodyHash>> {
  const hashes = new Map<string, BodyHash>();
  // Signatures that differ only in hash or l= share one canonicalization.
  const canonicalizers = new Map<string, { canon: BodyCanonicalizer; hashes: BodyHash[] }>();
  for (const c of sigs) {
    const key = bodyKey(c);
    if (hashes.has(key)) continue;
    const h: BodyHash = { hash: createHash(c.hashAlgo), limit: c.bodyLength ?? Infinity, hashed: 0 };
    hashes.set(key, h);
    let entry = canonicalizers.get(c.bodyCanon);
    if (!entry) {
      const group: BodyHash[] = [];
      entry = { canon: new BodyCanonicalizer(c.bodyCanon, (bytes) => group.forEach((g) => feed(g, bytes))), hashes: group };
      canonicalizers.set(c.bodyCanon, entry);
    }
    entry.hashes.push(h);
  }
  if (!canonicalizers.size) return hashes;
  for await (const chunk of message.openBody()) {
    signal?.throwIfAborted();
    for (const e of canonicalizers.values()) e.canon.update(chunk as Buffer);
  }
  for (const e of canonicalizers.values()) {
    e.canon.end();
    for (const h of e.hashes) {
      h.digest = h.hash.digest('base64');
      h.total = e.canon.length;
    }
  }
  return hashes;
}

function feed(h: BodyHash, bytes: Buffer): void {
  const take = Math.min(bytes.length, h.limit - h.hashed);
  if (take <= 0) return;
  h.hash.update(take === bytes.length ? bytes : bytes.subarray(0, take));
  h.hashed += take;
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
  if (flags.includes('s') && c.identityDomain !== undefined && c.identityDomain.toLowerCase().replace(/\.$/, '') !== c.d.toLowerCase().replace(/\.$/, '')) return make('permerror', 'key-identity-mismatch', undefined, testing);

  const data = headerHashInput(message, c);
  const signature = Buffer.from(c.b.replace(/[ \t\r\n]/g, ''), 'base64');
  let valid: boolean;
  try {
    // RFC 8463 3: Ed25519 signs the SHA-256 of the data. A public-key verify is a few
    // microseconds: done here, not in the thread pool, which would cost more to wake.
    valid = c.signAlgo === 'rsa' ? cryptoVerify('sha256', data, key, signature) : cryptoVerify(null, createHash('sha256').update(data).digest(), key, signature);
  } catch (err) {
    return make('neutral', 'signature-syntax', (err as Error).message, testing);
  }
  if (!valid) return make('fail', 'bad-signature', undefined, testing);
  if (body.total !== undefined && body.total > body.hashed) return make(opts.partialBody, 'partial-body', `${body.total - body.hashed} body bytes not signed`, testing);
  return make('pass', 'ok', undefined, testing);
}

/** RFC 6376 3.7: the signed fields, then the signature field itself with its b= value deleted, without its CRLF. */
function headerHashInput(message: Message, c: CheckedSignature): Buffer {
  const own = canonicalizeHeader(c.field.raw, c.headerCanon);
  return Buffer.concat([...selectHeaderFields(message.fields, c.signedNames).map((f) => canonicalizeHeader(f.raw, c.headerCanon)), withoutSignatureValue(own.subarray(0, own.length - 2))]);
}

/** The b= tag keeps its name and "=" and loses the rest up to its ";", whitespace included. */
function withoutSignatureValue(field: Buffer): Buffer {
  const text = field.toString('latin1');
  const colon = text.indexOf(':');
  const segments = text.slice(colon + 1).split(';');
  for (let i = segments.length - 1; i >= 0; i--) {
    const eq = segments[i].indexOf('=');
    if (eq >= 0 && segments[i].slice(0, eq).replace(/[ \t\r\n]+/g, '') === 'b') {
      segments[i] = segments[i].slice(0, eq + 1);
      break;
    }
  }
  return Buffer.from(`${text.slice(0, colon + 1)}${segments.join(';')}`, 'latin1');
}
