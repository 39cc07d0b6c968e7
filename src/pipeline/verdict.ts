/**
 * The one place that turns findings and the bank's settings into what happens to the
 * message (STYLE.md §3): pass, reject, tempfail or discard, with the reply from the table
 * and a reason for the log. A stage failure is always a tempfail (STYLE.md §5).
 */
import type { Bank } from '../config/bank-schema';
import { isPostsealError } from '../errors';
import { replies, withText, type SmtpReply } from '../smtp/replies';
import type { FindingCode } from './findings';
import type { Finding } from './stage';

export type Action = 'pass' | 'reject' | 'tempfail' | 'discard';

export interface Verdict {
  readonly action: Action;
  readonly reply: SmtpReply;
  /** The finding or error that decided, for the log line. */
  readonly reason: string;
}

type Rule = (bank: Bank, finding: Finding) => Omit<Verdict, 'reason'> | null;

const reject = (reply: SmtpReply) => ({ action: 'reject' as const, reply });
const rejectIf = (on: boolean, reply: SmtpReply) => (on ? reject(reply) : null);

const rules: Partial<Record<FindingCode, Rule>> = {
  LOOP_GUARD_TOO_MANY_HOPS: () => reject(replies.mailLoop),
  LOOP_GUARD_TRACE_SEEN: () => reject(replies.mailLoop),
  HEADER_SANITY_NUL: (b) => rejectIf(b.headerSanity.nul === 'reject', replies.headerRejected),
  HEADER_SANITY_EIGHT_BIT_HEADER: (b) => rejectIf(b.headerSanity.eightBitHeader === 'reject', replies.headerRejected),
  HEADER_SANITY_LONG_HEADER_LINE: (b) => rejectIf(b.headerSanity.longLine === 'reject', replies.headerRejected),
  HEADER_SANITY_LONG_BODY_LINE: (b) => rejectIf(b.headerSanity.longLine === 'reject', replies.headerRejected),
  HEADER_SANITY_MISSING_FROM: (b) => rejectIf(b.headerSanity.missingFrom === 'reject', replies.headerRejected),
  HEADER_SANITY_MULTIPLE_FROM: (b) => rejectIf(b.headerSanity.multipleFrom === 'reject', replies.headerRejected),
  SEVEN_BIT_SIGNED_EIGHT_BIT: (b) => (b.sevenBit.signedEightBit === 'tempfail' ? { action: 'tempfail', reply: replies.conversionFailed } : null),
  DKIM_SIGN_NO_FROM: (b) => rejectIf(b.dkimSign.unsignableFrom === 'reject', replies.headerRejected),
  DKIM_SIGN_MULTIPLE_FROM: (b) => rejectIf(b.dkimSign.unsignableFrom === 'reject', replies.headerRejected),
  // Never unsigned mail from a signing bank: Postfix retries and the log says why.
  DKIM_SIGN_FAILED: () => ({ action: 'tempfail', reply: replies.signingFailed }),
  // The policy and its domain (a DNS name that published a _dmarc record) go in the reply text.
  DMARC_FAIL_REJECT: (b, f) => rejectIf(b.dmarc.onReject === 'reject', withText(replies.dmarcRejected, `${replies.dmarcRejected.text} ${printable(f.detail)}`)),
  // A message naming more author domains than are evaluated may hide a p=reject one among them.
  DMARC_TOO_MANY_AUTHORS: (b, f) => rejectIf(b.dmarc.onReject === 'reject', withText(replies.dmarcRejected, `${replies.dmarcRejected.text}: ${printable(f.detail)}`)),
  DMARC_FROM_UNPARSEABLE: (b, f) => rejectIf(b.dmarc.onReject === 'reject', withText(replies.dmarcRejected, `${replies.dmarcRejected.text}: ${printable(f.detail)}`)),
  DMARC_TEMPERROR_ENFORCING: (b, f) =>
    b.dmarc.onTempError === 'tempfail' ? { action: 'tempfail', reply: withText(replies.dmarcTempfail, `${replies.dmarcTempfail.text} (${printable(f.detail)})`) } : null,
};

function printable(text: string | undefined): string {
  return (text ?? '').replace(/[^\x21-\x7e ]/g, '?');
}

/** Worst first: one tempfail among the findings outranks a reject (the mail may be fine). */
const rank: Record<Action, number> = { tempfail: 3, reject: 2, discard: 1, pass: 0 };

export function decide(findings: readonly Finding[], bank: Bank, failure?: unknown): Verdict {
  if (failure !== undefined) {
    const code = isPostsealError(failure) ? failure.code : 'STAGE_FAILED';
    const reply = code === 'STAGE_TIMEOUT' ? replies.stageTimeout : code === 'DEADLINE_EXCEEDED' ? replies.deadlineExceeded : replies.internalError;
    return { action: 'tempfail', reply, reason: code };
  }
  let verdict: Verdict = { action: 'pass', reply: replies.accepted, reason: 'no_decisive_finding' };
  for (const f of findings) {
    const v = rules[f.code]?.(bank, f);
    if (v && rank[v.action] > rank[verdict.action]) verdict = { ...v, reason: f.code };
  }
  return verdict;
}

/** The runner stops early once a verdict cannot turn back into a pass. */
export function isFinal(v: Verdict): boolean {
  return v.action !== 'pass';
}
