/**
 * Authentication-Results (RFC 8601): the outcomes the inbound checks record per transaction,
 * the one A-R field we write from them, and the removal of A-R fields that claim to be ours.
 *
 * The checks run as separate stages; each returns its outcome as a typed result (the keys
 * below) and the `authentication-results` stage writes the field once, after all of them, so
 * no check sees a header another one added.
 */
import { Message } from '../transaction/message';
import { authorOf, type Author } from './author';
import { ResultKey, type Results } from './results';

export type DkimResult = 'pass' | 'fail' | 'neutral' | 'policy' | 'permerror' | 'temperror';
/** Why a signature got its result (docs/authentication.md lists them). */
export type DkimReason =
  | 'ok'
  | 'partial-body'
  | 'body-hash-mismatch'
  | 'bad-signature'
  | 'key-not-found'
  | 'key-revoked'
  | 'key-invalid'
  | 'dns-temperror'
  | 'identity-mismatch'
  | 'key-identity-mismatch'
  | 'signature-expired'
  | 'weak-key'
  | 'rsa-sha1'
  | 'from-not-signed'
  | 'missing-tag'
  | 'signature-syntax'
  | 'signature-limit';

export interface DkimSignatureResult {
  readonly d: string;
  readonly s: string;
  readonly a: string;
  /** The whole b= value; A-R shows its start (RFC 6008). */
  readonly b: string;
  /** The AUID: i=, or "@d". */
  readonly i: string;
  readonly result: DkimResult;
  readonly reason: DkimReason;
  /** The key has t=y: reported, never trusted (RFC 6376 3.6.1). */
  readonly testing: boolean;
  readonly comment?: string;
}

export interface SpfOutcome {
  readonly result: 'pass' | 'fail' | 'softfail' | 'neutral' | 'none' | 'temperror' | 'permerror';
  /** The domain whose policy was checked: MAIL FROM's, or HELO's for the null sender. */
  readonly domain: string;
  readonly mailfrom?: string;
  readonly helo?: string;
  readonly comment?: string;
}

export interface DmarcOutcome {
  readonly result: 'pass' | 'fail' | 'none' | 'temperror' | 'permerror';
  readonly from: string;
  /** The policy that applies to this message (p, sp or np after t=y), when known. */
  readonly policy?: 'none' | 'quarantine' | 'reject';
  readonly policyDomain?: string;
  readonly comment?: string;
}

export interface ArcOutcome {
  readonly result: 'pass' | 'fail' | 'none';
  /** Instance of the newest ARC set (0 without a chain). */
  readonly instance: number;
  readonly comment?: string;
}

export interface AuthOutcomes {
  readonly dkim?: readonly DkimSignatureResult[];
  readonly adsp?: { readonly result: 'none' | 'pass' | 'unknown' | 'fail' | 'discard' | 'nxdomain' | 'temperror'; readonly domain: string };
  readonly spf?: SpfOutcome;
  readonly dmarc?: DmarcOutcome;
  readonly arc?: ArcOutcome;
}

/** Each check's result, handed to the stages after it (lib/results.ts). */
export const DKIM_RESULTS = new ResultKey<readonly DkimSignatureResult[]>('dkim');
export const ADSP_RESULT = new ResultKey<NonNullable<AuthOutcomes['adsp']>>('dkim-adsp');
export const SPF_RESULT = new ResultKey<SpfOutcome>('spf');
export const DMARC_RESULT = new ResultKey<DmarcOutcome>('dmarc');
export const ARC_RESULT = new ResultKey<ArcOutcome>('arc');

/** What the checks before a stage found, as Authentication-Results reports it. */
export function authOutcomes(results: Results): AuthOutcomes {
  return { dkim: results.get(DKIM_RESULTS), adsp: results.get(ADSP_RESULT), spf: results.get(SPF_RESULT), dmarc: results.get(DMARC_RESULT), arc: results.get(ARC_RESULT) };
}

/** The author of a message with exactly one From field naming one domain (RFC 7489 6.6.1). */
export function singleAuthor(message: Message): Author | null {
  const from = message.get('from');
  return from.length === 1 ? authorOf(from[0]) : null;
}

/** A signature that nothing may hold against the sender: passing, and not in test mode. */
export function trusted(s: DkimSignatureResult): boolean {
  return s.result === 'pass' && !s.testing;
}

/** RFC 2045 token: what a property value may be without quotes. */
const TOKEN = /^[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+$/;
const DOT_ATOM_ADDR = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]*@[A-Za-z0-9.-]+$/;

export function pvalue(v: string): string {
  const clean = v.replace(/[\x00-\x1f\x7f]+/g, ' ').trim();
  if (TOKEN.test(clean) || DOT_ATOM_ADDR.test(clean)) return clean;
  return `"${clean.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

function comment(text: string | undefined): string {
  if (!text) return '';
  return ` (${text
    .replace(/[\x00-\x1f\x7f]+/g, ' ')
    .replace(/[\\()]/g, (c) => `\\${c}`)
    .slice(0, 200)})`;
}

function resinfo(method: string, result: string, note: string | undefined, props: [string, string | undefined][]): string {
  const p = props.filter(([, v]) => v).map(([k, v]) => ` ${k}=${pvalue(v!)}`);
  return `${method}=${result}${comment(note)}${p.join('')}`;
}

/** One resinfo per check, in the order the checks ran; the header.b prefix is 12 characters. */
export function resinfos(o: AuthOutcomes): string[] {
  const out: string[] = [];
  for (const sig of o.dkim ?? []) {
    const note = [sig.testing ? 'test mode' : '', sig.reason === 'ok' ? '' : sig.reason, sig.comment ?? ''].filter(Boolean).join('; ');
    out.push(
      resinfo('dkim', sig.result, note, [
        ['header.d', sig.d],
        ['header.i', sig.i],
        ['header.s', sig.s],
        ['header.a', sig.a],
        ['header.b', sig.b.slice(0, 12)],
      ]),
    );
  }
  if (o.dkim && !o.dkim.length) out.push('dkim=none');
  if (o.adsp) out.push(resinfo('dkim-adsp', o.adsp.result, undefined, [['header.from', o.adsp.domain]]));
  if (o.spf)
    out.push(
      resinfo('spf', o.spf.result, o.spf.comment, [
        ['smtp.mailfrom', o.spf.mailfrom],
        ['smtp.helo', o.spf.helo],
      ]),
    );
  if (o.dmarc) {
    const d = o.dmarc;
    out.push(
      resinfo('dmarc', d.result, d.comment, [
        ['header.from', d.from],
        ['policy.dmarc', d.policy],
      ]),
    );
  }
  if (o.arc) out.push(resinfo('arc', o.arc.result, o.arc.comment, []));
  return out;
}

/** The field value: our authserv-id, then each resinfo on its own folded line (or "none"). */
export function formatAuthResults(authservId: string, infos: readonly string[]): string {
  if (!infos.length) return `${pvalue(authservId)}; none`;
  return `${pvalue(authservId)};\r\n\t${infos.join(';\r\n\t')}`;
}

function comparableId(id: string): string {
  return id.trim().toLowerCase().replace(/\.+$/, '');
}

/** The authserv-id of an A-R field value: the first token or quoted-string after CFWS. */
export function authservIdOf(value: string): string | null {
  let i = 0;
  const skipCfws = () => {
    for (;;) {
      while (i < value.length && /[ \t\r\n]/.test(value[i])) i++;
      if (value[i] !== '(') return;
      let depth = 0;
      for (; i < value.length; i++) {
        if (value[i] === '\\') i++;
        else if (value[i] === '(') depth++;
        else if (value[i] === ')' && --depth === 0) {
          i++;
          break;
        }
      }
    }
  };
  skipCfws();
  if (value[i] === '"') {
    let out = '';
    for (i++; i < value.length && value[i] !== '"'; i++) out += value[i] === '\\' ? value[++i] : value[i];
    return out;
  }
  const m = /^[^\s;()"]+/.exec(value.slice(i));
  return m ? m[0] : null;
}

/**
 * Removes every A-R field that carries our authserv-id, and every one whose authserv-id cannot
 * be read (an unclosed comment, nothing but CFWS); foreign ones stay. Compared as domain names
 * are: case-insensitive, without surrounding space and a trailing dot ("MX.example.com." and
 * " mx.example.com" are ours too, or a forgery spelt so would survive and be read as our verdict).
 */
export function removeOwnAuthResults(message: Message, authservId: string): { message: Message; removed: number } {
  const ours = comparableId(authservId);
  const keep = message.fields.filter((f) => {
    if (f.key !== 'authentication-results') return true;
    const id = authservIdOf(Message.value(f));
    // A field whose authserv-id cannot be read may be read as ours by a lenient reader: it goes too.
    return id !== null && comparableId(id) !== ours;
  });
  const removed = message.fields.length - keep.length;
  return { message: removed ? message.withFields(keep) : message, removed };
}
