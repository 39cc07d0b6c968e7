/**
 * DMARC failure reports (RFC 7489 7.3) in the Abuse Reporting Format for authentication
 * failures (RFC 5965, RFC 6591, RFC 6652): which evaluations the domain's `fo=` asks about,
 * the header section as it is copied (RFC 6590 redaction of local parts), and the report mail.
 *
 * fo= (RFC 7489 6.3), a colon-separated list; any listed option that matches asks for a report:
 *   0  every mechanism failed to give an aligned pass (DMARC failed; the default)
 *   1  any mechanism gave something other than an aligned pass
 *   d  a DKIM signature failed to verify (result fail or permerror), aligned or not
 *   s  SPF failed (fail, softfail or permerror), aligned or not
 * Unknown options are ignored; a list with no known option is "0".
 *
 * The mail: `multipart/report; report-type=feedback-report` with a text part, a
 * message/feedback-report part (Feedback-Type: auth-failure, Auth-Failure: dmarc for 0 and 1,
 * signature for d, spf for s) and the original header section as text/rfc822-headers (never
 * the body: RFC 7489 9.5 privacy). Marked `Auto-Submitted: auto-generated` and
 * `X-Postseal-Report: dmarc-failure` (no loops: stages/dmarc/evaluate.ts).
 *
 * Fails: never; message data is written only as header-safe text (CR/LF removed) or inside
 * the headers part, which is base64 when it has 8-bit bytes or lines too long for 7bit.
 */
import { randomBytes } from 'node:crypto';
import { REPORT_MARKER_FIELD } from './mail';
import type { PublishedPolicy } from './policy';

export type AuthFailure = 'dmarc' | 'signature' | 'spf';

export interface FailureFacts {
  /** A DKIM signature passed and aligns with the header From (RFC 7489 3.1.1). */
  readonly dkimAligned: boolean;
  /** SPF passed for a domain that aligns with the header From (RFC 7489 3.1.2). */
  readonly spfAligned: boolean;
  readonly dkim: readonly { readonly domain: string; readonly selector: string; readonly result: string }[];
  readonly spf?: { readonly domain: string; readonly result: string };
}

const FO_OPTIONS = new Set(['0', '1', 'd', 's']);
const DKIM_FAILED = new Set(['fail', 'permerror']);
const SPF_FAILED = new Set(['fail', 'softfail', 'permerror']);

/** The known options of an fo= value ("0" when none is known). */
export function foOptions(fo: string): Set<string> {
  const set = new Set(
    fo
      .split(':')
      .map((o) => o.trim().toLowerCase())
      .filter((o) => FO_OPTIONS.has(o)),
  );
  return set.size ? set : new Set(['0']);
}

/** What a report about these results would be for, or null when fo= asks for none. */
export function failureToReport(fo: string, f: FailureFacts): AuthFailure | null {
  const o = foOptions(fo);
  if (o.has('0') && !f.dkimAligned && !f.spfAligned) return 'dmarc';
  if (o.has('1') && (!f.dkimAligned || !f.spfAligned)) return 'dmarc';
  if (o.has('d') && f.dkim.some((s) => DKIM_FAILED.has(s.result))) return 'signature';
  if (o.has('s') && f.spf && SPF_FAILED.has(f.spf.result)) return 'spf';
  return null;
}

/** Whether any fo= option could ask about these results (before the record is known). */
export function mayNeedReport(f: FailureFacts): boolean {
  return failureToReport('1:d:s', f) !== null;
}

/** Fields whose addresses identify messages, not people, or whose bytes a signature covers. */
const KEEP_FIELDS = new Set(['message-id', 'in-reply-to', 'references', 'content-id', 'dkim-signature', 'arc-message-signature', 'arc-seal', 'domainkey-signature']);
/**
 * Address-like words: a run of characters that are not delimiters, then checked for "@"; and a
 * quoted local part of bounded length. Both scan the text once: a regular expression for a whole
 * address (local part, "@", domain) backtracks quadratically over a long run of letters without
 * "@" (measured: 7.8 s for one 60 kB field; this way 20 ms).
 */
const WORD = /[^\s<>(),;:"[\]\\]+/g;
const QUOTED_LOCAL = /"[^"\r\n]{0,256}"@([A-Za-z0-9.-]{1,253})/g;
const DOMAIN = /^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/;

/**
 * The header section as it goes into a report: cut after the last whole field within
 * `maxBytes`, and with `redact` the local part of each address outside `keepDomain` (the
 * reported domain and below) replaced by `redacted` (RFC 6590 3), in every field but those
 * that name messages or carry signatures.
 */
export function reportHeaders(header: Buffer, opts: { maxBytes: number; redact: boolean; keepDomain: string }): Buffer {
  const fields = splitFields(header.toString('latin1'));
  const keep = opts.keepDomain.toLowerCase();
  const out: string[] = [];
  let size = 0;
  for (const field of fields) {
    const name = field.slice(0, field.indexOf(':')).trim().toLowerCase();
    const text = opts.redact && !KEEP_FIELDS.has(name) ? redact(field, keep) : field;
    if (size + text.length > opts.maxBytes) break;
    out.push(text);
    size += text.length;
  }
  return Buffer.from(out.join(''), 'latin1');
}

/**
 * `text` with the local part of each address outside `keep` (and below it) redacted. Fails
 * closed: an address whose domain is not plainly in `keep` (8-bit bytes, an address literal,
 * no domain at all) counts as outside; an RFC 2047 encoded word that decodes to text with an
 * address outside is replaced whole.
 */
export function redact(field: string, keep: string): string {
  const k = keep.toLowerCase();
  const outside = (domain: string) => {
    const d = domain.toLowerCase();
    return !DOMAIN.test(domain) || (d !== k && !d.endsWith(`.${k}`));
  };
  return field
    .replace(ENCODED_WORD, (whole, _charset: string, enc: string, text: string) => {
      const decoded = decodeWord(enc, text);
      return decoded.includes('@') && redact(decoded, k) !== decoded ? '=?us-ascii?Q?redacted?=' : whole;
    })
    .replace(QUOTED_LOCAL, (whole, domain: string) => (outside(domain) ? `redacted@${domain}` : whole))
    .replace(WORD, (word) => {
      const at = word.lastIndexOf('@');
      if (at < 1) return word;
      // A sentence's full stop after an address is not part of its domain.
      const domain = word.slice(at + 1).replace(/\.+$/, '');
      // An Authentication-Results property (smtp.mailfrom=...) keeps its name.
      const prop = /^[A-Za-z]{1,20}\.[A-Za-z-]{1,40}=/.exec(word)?.[0] ?? '';
      return outside(domain) ? `${prop}redacted@${word.slice(at + 1)}` : word;
    });
}

/** RFC 2047 encoded words, bounded (one pass, no backtracking over long runs). */
const ENCODED_WORD = /=\?([^?\s]{1,40})\?([QqBb])\?([^?\s]{0,1000})\?=/g;

/** The bytes of an encoded word's text, as latin1 (enough to find an "@" and a domain). */
function decodeWord(enc: string, text: string): string {
  if (enc === 'B' || enc === 'b') return Buffer.from(text, 'base64').toString('latin1');
  return text.replace(/_/g, ' ').replace(/=([0-9A-Fa-f]{2})/g, (_m, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)));
}

/** Whole fields (with their folded lines and line end); the separator line is not one. */
function splitFields(text: string): string[] {
  const fields: string[] = [];
  for (const line of text.split(/(?<=\n)/)) {
    if (line === '\r\n' || line === '\n') break;
    if ((line[0] === ' ' || line[0] === '\t') && fields.length) fields[fields.length - 1] += line;
    else if (line.includes(':')) fields.push(line.endsWith('\n') ? line : `${line}\r\n`);
  }
  return fields;
}

/**
 * What the dmarc stage hands over for a possible failure report: it has decided (fo=, the
 * record's ruf= addresses) that the domain asks for one; the sender checks the rest.
 */
export interface FailureSample {
  readonly receivedAt: Date;
  readonly sourceIp?: string;
  readonly mailFrom: string;
  readonly headerFrom: string;
  readonly policy: PublishedPolicy;
  readonly authFailure: AuthFailure;
  readonly facts: FailureFacts;
  /** Our Authentication-Results value for the message. */
  readonly authResults: string;
  readonly disposition: 'none' | 'quarantine' | 'reject';
  /** The header section as received. */
  readonly headers: Buffer;
  /**
   * The same for every Postfix delivery attempt of one queued message (the dmarc stage's retry
   * id, as for aggregate results): a message a later stage tempfailed is reported once, not at
   * each retry. Undefined without a queue ID.
   */
  readonly once?: string;
}

/** Where the dmarc stage offers samples: it must return at once and never throw. */
export interface DmarcFailureSink {
  offer(sample: FailureSample): void;
}

export type DeliveryResult = 'delivered' | 'spam' | 'policy' | 'reject' | 'other';

export interface FailureReportInput {
  readonly from: string;
  readonly to: readonly string[];
  /** Our domain, named in the text part and the Message-ID. */
  readonly submitter: string;
  readonly date: Date;
  readonly userAgent: string;
  /** The header From domain (Reported-Domain). */
  readonly reportedDomain: string;
  readonly policyDomain: string;
  readonly authFailure: AuthFailure;
  readonly facts: FailureFacts;
  /** The envelope sender, '' for the null sender. */
  readonly mailFrom: string;
  readonly arrivalDate: Date;
  readonly sourceIp?: string;
  /** Our Authentication-Results value (authserv-id; resinfos). */
  readonly authResults: string;
  readonly deliveryResult: DeliveryResult;
  /** SPF records of the SPF domain, as RFC 6591 3.2 SPF-DNS wants them ("txt : domain : text"). */
  readonly spfDns?: readonly string[];
  /** The header section as reportHeaders() gave it. */
  readonly headers: Buffer;
}

const oneLine = (s: string) => s.replace(/[\r\n]+/g, ' ').replace(/[^\x20-\x7e\t]/g, '?');
const rfc5322Date = (d: Date) => d.toUTCString().replace('GMT', '+0000');

/** The message/feedback-report fields (RFC 5965 3.5, RFC 6591 3, RFC 7489 7.3.1). */
export function feedbackFields(m: FailureReportInput): string[] {
  const f = [
    'Feedback-Type: auth-failure',
    `User-Agent: ${oneLine(m.userAgent)}`,
    'Version: 1',
    `Original-Mail-From: <${oneLine(m.mailFrom)}>`,
    `Arrival-Date: ${rfc5322Date(m.arrivalDate)}`,
  ];
  if (m.sourceIp) f.push(`Source-IP: ${oneLine(m.sourceIp)}`);
  f.push(`Reported-Domain: ${oneLine(m.reportedDomain)}`, `Authentication-Results: ${m.authResults.replace(/\r?\n(?![ \t])/g, '\r\n\t')}`);
  f.push(`Auth-Failure: ${m.authFailure}`);
  const aligned = [m.facts.dkimAligned ? 'dkim' : '', m.facts.spfAligned ? 'spf' : ''].filter(Boolean);
  f.push(`Identity-Alignment: ${aligned.length ? aligned.join(', ') : 'none'}`);
  f.push(`Delivery-Result: ${m.deliveryResult}`);
  // RFC 6591 3.1: the DKIM fields for a DKIM failure; for a DMARC failure the signatures that did not pass.
  if (m.authFailure !== 'spf') {
    for (const s of m.facts.dkim.filter((s) => s.result !== 'pass').slice(0, 5)) f.push(`DKIM-Domain: ${oneLine(s.domain)}`, `DKIM-Selector: ${oneLine(s.selector)}`);
  }
  if (m.authFailure !== 'signature') for (const r of (m.spfDns ?? []).slice(0, 5)) f.push(`SPF-DNS: ${oneLine(r)}`);
  return f;
}

function base64Lines(b: Buffer): string {
  return (b.toString('base64').match(/.{1,76}/g) ?? []).join('\r\n');
}

/** RFC 5322 2.1.1: a line is at most 998 octets. */
const MAX_LINE = 998;

/**
 * `text` with no line over MAX_LINE: a longer one is folded before white space, and a word still
 * longer (a sender's 3000-character DKIM selector or envelope address) is cut. Without this the
 * line reached the notify target whole, and a relay that breaks long lines (Postfix's
 * smtp_line_length_limit) would break the report's DKIM signature.
 */
function fitLines(text: string): string {
  return text
    .split('\r\n')
    .map((line) => {
      if (line.length <= MAX_LINE) return line;
      const out: string[] = [];
      let cur = '';
      for (const word of line.split(/(?=[ \t])/)) {
        if (cur && cur.length + word.length > MAX_LINE) {
          out.push(cur);
          cur = '';
        }
        cur += word;
      }
      out.push(cur);
      return out.map((l) => l.slice(0, MAX_LINE)).join('\r\n');
    })
    .join('\r\n');
}

/** The report mail, CRLF line ends, ready for DATA. */
export function composeFailureReport(m: FailureReportInput): Buffer {
  const boundary = `=_dmarc_ruf_${randomBytes(12).toString('hex')}`;
  const idDomain = m.from.slice(m.from.lastIndexOf('@') + 1) || m.submitter;
  const text = [
    `This is a DMARC failure report (RFC 7489 7.3, RFC 6591) from ${oneLine(m.submitter)} about a message`,
    `claiming to be from ${oneLine(m.reportedDomain)} (policy domain ${oneLine(m.policyDomain)}), received ${rfc5322Date(m.arrivalDate)}${m.sourceIp ? ` from ${oneLine(m.sourceIp)}` : ''}.`,
    'The message body is not included; the header section follows as text/rfc822-headers.',
  ].join('\r\n');
  const headerText = m.headers.toString('latin1');
  // 7bit needs ASCII, CRLF line ends only and lines of at most 998 octets (RFC 5322 2.1.1).
  const sevenBit = !/[^\x00-\x7f]|\r(?!\n)|(?<!\r)\n/.test(headerText) && !headerText.split('\r\n').some((l) => l.length > 998);
  const lines = [
    `From: ${oneLine(m.from)}`,
    `To: ${m.to.map(oneLine).join(', ')}`,
    `Subject: DMARC failure report for ${oneLine(m.reportedDomain)}${m.sourceIp ? ` from ${oneLine(m.sourceIp)}` : ''}`,
    `Date: ${rfc5322Date(m.date)}`,
    `Message-ID: <${randomBytes(16).toString('hex')}@${oneLine(idDomain)}>`,
    'MIME-Version: 1.0',
    'Auto-Submitted: auto-generated',
    `${REPORT_MARKER_FIELD}: dmarc-failure`,
    `Content-Type: multipart/report; report-type=feedback-report; boundary="${boundary}"`,
    '',
    'This is a MIME-formatted message.',
    `--${boundary}`,
    'Content-Type: text/plain; charset=us-ascii',
    'Content-Transfer-Encoding: 7bit',
    '',
    text,
    `--${boundary}`,
    'Content-Type: message/feedback-report',
    'Content-Transfer-Encoding: 7bit',
    '',
    ...feedbackFields(m),
    '',
    `--${boundary}`,
    'Content-Type: text/rfc822-headers',
    `Content-Transfer-Encoding: ${sevenBit ? '7bit' : 'base64'}`,
    '',
    sevenBit ? headerText.replace(/\r\n$/, '') : base64Lines(m.headers),
    `--${boundary}--`,
    '',
  ];
  return Buffer.from(lines.map(fitLines).join('\r\n'), 'latin1');
}
