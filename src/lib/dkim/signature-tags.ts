/**
 * Reads one DKIM-Signature field (RFC 6376 3.5) and checks it before anything is hashed or
 * looked up (RFC 6376 6.1.1): the tag-list grammar (lib/dkim/tag-list.ts: mailauth's parser, strict,
 * tag names case-sensitive), the required tags, v=1, the algorithm and canonicalization, the number
 * syntax of t= x= l=, domain and selector syntax, q=, i= within d=, x= after t=, and that
 * From is signed. A missing required tag is permerror (RFC 6376 6.1.1 PERMFAIL), any other
 * broken tag neutral (signature-syntax). A signature that fails here is reported without a DNS query.
 */
import { domainToASCII } from 'node:url';
import type { DkimReason, DkimResult } from '../authentication-results';
import type { DkimCanonicalization } from './canonicalization';
import { tagsOf } from './tag-list';
import type { HeaderField } from '../../transaction/message';

/** The tags every signature reports, whatever became of it. */
export interface SignatureIds {
  readonly d: string;
  readonly s: string;
  readonly a: string;
  readonly b: string;
  /** The AUID: i= (dkim-quoted-printable decoded), or "@d". */
  readonly i: string;
}

export interface CheckedSignature extends SignatureIds {
  readonly field: HeaderField;
  readonly signAlgo: 'rsa' | 'ed25519';
  readonly hashAlgo: 'sha256' | 'sha1';
  readonly headerCanon: DkimCanonicalization;
  readonly bodyCanon: DkimCanonicalization;
  /** h=, lower case, in order. */
  readonly signedNames: readonly string[];
  readonly bodyHash: string;
  /** l=: canonical body octets covered. */
  readonly bodyLength?: number;
  /** t= and x=, seconds since the epoch. */
  readonly timestamp?: number;
  readonly expiration?: number;
  /** The domain of an i= tag, when there is one. */
  readonly identityDomain?: string;
}

export interface RejectedSignature extends SignatureIds {
  readonly result: DkimResult;
  readonly reason: DkimReason;
  readonly comment?: string;
}

const REQUIRED = ['v', 'a', 'b', 'bh', 'd', 'h', 's'];
const ALGORITHMS = new Set(['rsa-sha256', 'ed25519-sha256', 'rsa-sha1']);
const CANONICALIZATIONS = new Set(['simple', 'relaxed']);
const LABEL = '[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
const DOMAIN_NAME = new RegExp(`^${LABEL}(?:\\.${LABEL})+$`);
const SELECTOR = new RegExp(`^${LABEL}(?:\\.${LABEL})*$`);
const TIMESTAMP = /^[0-9]{1,12}$/;
const BODY_LENGTH = /^[0-9]{1,76}$/;
/** RFC 5322 dot-atom-text (with RFC 6531 UTF-8) or a quoted-string, for the i= local-part. */
const LOCAL_PART = /^(?:(?:[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]|[^\x00-\x7f])+(?:\.(?:[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]|[^\x00-\x7f])+)*|"(?:[^"\\\r\n]|\\.)*")$/;

export function idsOf(parsed: Record<string, { value?: unknown }>): SignatureIds {
  const tag = (k: string) => (parsed[k]?.value === undefined ? '' : String(parsed[k].value));
  const d = tag('d');
  return { d, s: tag('s'), a: tag('a'), b: tag('b'), i: parsed.i ? decodeQuotedPrintable(tag('i')) : `@${d}` };
}

export function checkSignature(field: HeaderField, now: Date): CheckedSignature | RejectedSignature {
  const { parsed, raw, syntaxErrors } = tagsOf(field);
  const ids = idsOf(parsed);
  const reject = (result: DkimResult, reason: DkimReason, comment?: string): RejectedSignature => ({ ...ids, result, reason, ...(comment ? { comment } : {}) });
  const syntax = (comment: string) => reject('neutral', 'signature-syntax', comment);

  // RFC 6376 6.1.1: "If any tag listed as "required" in Section 3.5 is omitted from the
  // DKIM-Signature header field, the Verifier MUST ignore the DKIM-Signature header field and
  // return PERMFAIL (signature missing required tag)"; RFC 8601 2.7.1 calls that permerror.
  const missing = REQUIRED.filter((t) => !parsed[t]);
  if (missing.length) return reject('permerror', 'missing-tag', `signature missing required tag ${missing.map((t) => `${t}=`).join(' ')}`);
  const algorithm = ids.a.toLowerCase();
  if (!ALGORITHMS.has(algorithm)) return syntax('unknown algorithm');
  const [headerCanon, bodyCanon = 'simple'] = (String(parsed.c?.value ?? 'simple') || 'simple')
    .toLowerCase()
    .split('/')
    .map((c) => c.trim());
  if (!CANONICALIZATIONS.has(headerCanon) || !CANONICALIZATIONS.has(bodyCanon)) return syntax('unknown canonicalization');
  // Present but empty: a syntax error like any other malformed value.
  if (!ids.d || !ids.s) return syntax('signature syntax error');
  if (syntaxErrors.length) return syntax('signature syntax error');
  // "Verifiers MUST return PERMFAIL (incompatible version)"
  if (raw.get('v') !== '1') return syntax('incompatible version');
  if (['t', 'x'].some((t) => parsed[t] && !TIMESTAMP.test(raw.get(t) ?? '')) || (parsed.l && !BODY_LENGTH.test(raw.get('l') ?? ''))) return syntax('signature syntax error');
  const signedNames = String(parsed.h?.value ?? '')
    .split(':')
    .map((n) => n.trim().toLowerCase())
    .filter(Boolean);
  if (!signedNames.length) return syntax('signature syntax error');
  if (!DOMAIN_NAME.test(domainToASCII(ids.d) || ids.d) || !SELECTOR.test(aLabel(ids.s))) return syntax('signature syntax error');
  if (
    parsed.q &&
    !String(parsed.q.value ?? '')
      .split(':')
      .some((m) => m.trim().toLowerCase() === 'dns/txt')
  )
    return syntax('unsupported query method');

  let identityDomain: string | undefined;
  if (parsed.i) {
    const at = ids.i.lastIndexOf('@');
    const local = at >= 0 ? ids.i.slice(0, at) : '';
    identityDomain = at >= 0 ? ids.i.slice(at + 1) : '';
    const validSyntax = at >= 0 && (!local || LOCAL_PART.test(local)) && DOMAIN_NAME.test(domainToASCII(identityDomain) || identityDomain);
    if (!validSyntax) return syntax('signature syntax error');
    if (!sameOrSubdomain(identityDomain, ids.d)) return reject('permerror', 'identity-mismatch');
  }
  const timestamp = parsed.t ? Number(raw.get('t')) : undefined;
  const expiration = parsed.x ? Number(raw.get('x')) : undefined;
  // "The value of the x= tag MUST be greater than the value of the t= tag"
  if (timestamp !== undefined && expiration !== undefined && expiration <= timestamp) return syntax('invalid expiration');
  // RFC 6376 6.1.1: a signature that does not cover From says nothing about the author.
  if (!signedNames.includes('from')) return reject('permerror', 'from-not-signed');
  if (expiration !== undefined && expiration * 1000 < now.getTime()) return reject('permerror', 'signature-expired');

  const [signAlgo, hashAlgo] = algorithm.split('-') as ['rsa' | 'ed25519', 'sha256' | 'sha1'];
  return {
    ...ids,
    field,
    signAlgo,
    hashAlgo,
    headerCanon: headerCanon as DkimCanonicalization,
    bodyCanon: bodyCanon as DkimCanonicalization,
    signedNames,
    bodyHash: String(parsed.bh?.value ?? '').replace(/[ \t\r\n]/g, ''),
    ...(parsed.l ? { bodyLength: Number(raw.get('l')) } : {}),
    ...(timestamp !== undefined ? { timestamp } : {}),
    ...(expiration !== undefined ? { expiration } : {}),
    ...(identityDomain !== undefined ? { identityDomain } : {}),
  };
}

export function sameOrSubdomain(child: string, parent: string): boolean {
  const c = child.toLowerCase().replace(/\.$/, '');
  const p = parent.toLowerCase().replace(/\.$/, '');
  return !!c && !!p && (c === p || c.endsWith(`.${p}`));
}

/** A selector may be a single label, which domainToASCII does not take for a domain. */
function aLabel(name: string): string {
  if (/^[\x00-\x7f]*$/.test(name)) return name;
  return domainToASCII(`${name}.invalid`).replace(/\.invalid$/, '') || name;
}

/** RFC 6376 2.11 dkim-quoted-printable; FWS is not part of the value. */
function decodeQuotedPrintable(value: string): string {
  const bytes = Buffer.from(value.replace(/[ \t\r\n]+/g, ''), 'utf8').toString('latin1');
  return Buffer.from(
    bytes.replace(/=([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))),
    'latin1',
  ).toString('utf8');
}
