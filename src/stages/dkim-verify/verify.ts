/**
 * DKIM verification (RFC 6376, RFC 8301, RFC 8463) with mailauth as the engine, in its
 * strict mode, and what it leaves out added around it:
 *
 * - one result per signature with a reason code (authentication-results.ts DkimReason);
 * - key not found, revoked key (empty p=), unusable key, t=s identity mismatch, expired x=
 *   and From not signed are permerror (RFC 6376 6.1: PERMFAIL), not neutral;
 * - rsa-sha1 and keys under minKeyBits are `policy`, never a pass (RFC 8301 3.1, 3.2);
 * - a t=y key is reported as test mode (RFC 6376 3.6.1);
 * - at most maxSignatures signatures are verified: the rest are reported neutral, unverified,
 *   so a message with a thousand signatures costs no more than one with ten.
 *
 * The key records come through our resolver and its cache, so looking one up again here to
 * tell a revoked key from a broken one costs no query.
 */
import { dkimVerify } from 'mailauth/lib/dkim/verify';
import type { DKIMResult, DNSResolver } from 'mailauth';
import type { DkimReason, DkimResult, DkimSignatureResult } from '../../lib/authentication-results';
import { mailauthResolver, type DnsResolver } from '../../lib/dns';
import type { Message } from '../../transaction/message';
const parseDkimHeaders: (line: string) => { parsed?: Record<string, { value?: unknown }> } = require('mailauth/lib/parse-dkim-headers');

export interface DkimVerifyOptions {
  readonly resolver: DnsResolver;
  readonly maxSignatures: number;
  readonly minKeyBits: number;
  /** What a passing l= signature with unsigned bytes after its limit gets. */
  readonly partialBody: 'pass' | 'neutral';
  readonly now?: Date;
  readonly signal?: AbortSignal;
}

export interface DkimVerification {
  readonly signatures: DkimSignatureResult[];
  /** Addresses of the From field(s), for DMARC and signer policies. */
  readonly headerFrom: string[];
  readonly fromFields: number;
}

const KEY_COMMENTS = new Set(['unknown key version', 'unknown key type', 'inappropriate hash algorithm', 'key not for email', 'inappropriate key algorithm']);

export async function verifyDkim(message: Message, opts: DkimVerifyOptions): Promise<DkimVerification> {
  const sigFields = message.get('dkim-signature');
  const extra = sigFields.slice(opts.maxSignatures);
  const view = extra.length ? message.withFields(message.fields.filter((f) => !extra.includes(f))) : message;
  const out = await dkimVerify(view.openRaw(), {
    resolver: mailauthResolver(opts.resolver, opts.signal) as DNSResolver,
    minBitLength: opts.minKeyBits,
    rejectRsaSha1: true,
    strict: true,
    curTime: opts.now,
  });
  const signatures: DkimSignatureResult[] = [];
  for (const r of out.results) {
    if (r.status.result === 'none' && !r.signingDomain) continue;
    signatures.push(await classify(r, opts));
  }
  for (const f of extra) signatures.push(unverified(f.raw.toString('latin1'), opts.maxSignatures));
  return { signatures, headerFrom: out.headerFrom, fromFields: out.fromFields };
}

async function classify(r: DKIMResult, opts: DkimVerifyOptions): Promise<DkimSignatureResult> {
  const status = r.status as DKIMResult['status'] & { comment?: string; testing?: boolean; underSized?: number; policy?: Record<string, string>; header?: Record<string, string> };
  const d = r.signingDomain ?? '';
  const s = r.selector ?? '';
  const base = { d, s, a: r.algo ?? '', b: String(r.signature ?? ''), i: status.header?.i || `@${d}`, testing: !!status.testing };
  const comment = status.comment;
  const make = (result: DkimResult, reason: DkimReason, note?: string): DkimSignatureResult => ({ ...base, result, reason, ...(note ? { comment: note } : {}) });
  switch (status.result) {
    case 'pass':
      if (status.underSized) return make(opts.partialBody, 'partial-body', `${status.underSized} body bytes not signed`);
      return make('pass', 'ok');
    case 'fail':
      return make('fail', comment === 'body hash did not verify' ? 'body-hash-mismatch' : 'bad-signature');
    case 'policy':
      return make('policy', status.policy?.['dkim-rules'] === 'weak-key' ? 'weak-key' : 'rsa-sha1');
    case 'temperror':
      return make('temperror', 'dns-temperror', comment);
  }
  switch (comment) {
    case 'no key':
      return make('permerror', 'key-not-found');
    case 'invalid public key':
      return make('permerror', (await keyRevoked(d, s, opts)) ? 'key-revoked' : 'key-invalid');
    case 'domain mismatch':
      return make('permerror', identityOutsideDomain(base.i, d) ? 'identity-mismatch' : 'key-identity-mismatch');
    case 'From field not signed':
      return make('permerror', 'from-not-signed');
    case 'expired':
      return make('permerror', 'signature-expired');
  }
  if (comment && KEY_COMMENTS.has(comment)) return make('permerror', 'key-invalid', comment);
  return make('neutral', 'signature-syntax', comment);
}

/** RFC 6376 3.6.1: "An empty value means that this public key has been revoked." */
async function keyRevoked(d: string, s: string, opts: DkimVerifyOptions): Promise<boolean> {
  const r = await opts.resolver.query(`${s}._domainkey.${d}`, 'TXT', opts.signal);
  if (r.kind !== 'answer' || !r.records.length) return false;
  const record = r.records[0].join('');
  return /(^|;)\s*p\s*=\s*(;|$)/.test(record);
}

function identityOutsideDomain(auid: string, d: string): boolean {
  const domain = auid.slice(auid.lastIndexOf('@') + 1).toLowerCase();
  const sd = d.toLowerCase();
  return domain !== sd && !domain.endsWith(`.${sd}`);
}

function unverified(raw: string, max: number): DkimSignatureResult {
  const tags = parseDkimHeaders(raw).parsed ?? {};
  const tag = (k: string) => String(tags[k]?.value ?? '');
  const d = tag('d');
  return { d, s: tag('s'), a: tag('a'), b: tag('b'), i: tag('i') || `@${d}`, result: 'neutral', reason: 'signature-limit', testing: false, comment: `not verified: more than ${max} signatures` };
}
