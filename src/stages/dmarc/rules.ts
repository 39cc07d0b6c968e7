/**
 * What the dmarc stage's findings mean, given the bank's dmarc settings: a p=reject failure
 * (and a From that fails closed) is rejected, quarantined (held in postseal's quarantine),
 * marked (`header`: delivered with X-Postseal-Quarantine, which Postfix header_checks can
 * HOLD) or only reported; a p=quarantine failure is quarantined, marked or reported; a DNS
 * failure under an enforcing policy is a tempfail or reported.
 */
import type { Decision, Rule } from '../../pipeline/stage';
import { replies, withText } from '../../smtp/replies';
import type { DmarcSettings } from './schema';

export const DMARC_FINDINGS = [
  'DMARC_PASS',
  'DMARC_NONE',
  'DMARC_FAIL',
  'DMARC_FAIL_QUARANTINE',
  'DMARC_FAIL_REJECT',
  'DMARC_TEMPERROR',
  'DMARC_TEMPERROR_ENFORCING',
  'DMARC_NOT_CHECKED',
  'DMARC_TOO_MANY_AUTHORS',
  'DMARC_FROM_UNPARSEABLE',
] as const;
export type DmarcFinding = (typeof DMARC_FINDINGS)[number];

export const QUARANTINE_FIELD = 'X-Postseal-Quarantine';

/** Sender-controlled text goes into a reply or a header field only as printable ASCII. */
function printable(text: string | undefined): string {
  return (text ?? '').replace(/[^\x21-\x7e ]/g, '?');
}

/** `quarantine` holds the message; `header` delivers it marked for Postfix's HOLD (the meaning of quarantine before postseal had one). */
function quarantine(how: 'quarantine' | 'header', what: string, authservId: string): Decision {
  if (how === 'quarantine') return { action: 'quarantine' };
  return { action: 'tag', fields: [{ name: QUARANTINE_FIELD, value: `DMARC ${what} (${authservId})` }] };
}

const quarantines = (v: string): v is 'quarantine' | 'header' => v === 'quarantine' || v === 'header';

/** onReject for a p=reject failure; the reply names the policy domain (a DNS name that published it). */
const failReject: Rule<DmarcSettings> = (s, _b, f, ctx) => {
  if (s.onReject === 'reject') return { action: 'reject', reply: withText(replies.dmarcRejected, `${replies.dmarcRejected.text} ${printable(f.detail)}`) };
  return quarantines(s.onReject) ? quarantine(s.onReject, `policy ${printable(f.detail)}`, ctx.authservId) : null;
};

/** onReject for a From that cannot be read reliably or names too many domains. */
const failClosed: Rule<DmarcSettings> = (s, _b, f, ctx) => {
  if (s.onReject === 'reject') return { action: 'reject', reply: withText(replies.dmarcRejected, `${replies.dmarcRejected.text}: ${printable(f.detail)}`) };
  return quarantines(s.onReject) ? quarantine(s.onReject, printable(f.detail), ctx.authservId) : null;
};

export const dmarcRules: Partial<Record<DmarcFinding, Rule<DmarcSettings>>> = {
  DMARC_FAIL_REJECT: failReject,
  DMARC_FAIL_QUARANTINE: (s, _b, f, ctx) => (quarantines(s.onQuarantine) ? quarantine(s.onQuarantine, `policy ${printable(f.detail)}`, ctx.authservId) : null),
  DMARC_TOO_MANY_AUTHORS: failClosed,
  DMARC_FROM_UNPARSEABLE: failClosed,
  DMARC_TEMPERROR_ENFORCING: (s, _b, f) =>
    s.onTempError === 'tempfail' ? { action: 'tempfail', reply: withText(replies.dmarcTempfail, `${replies.dmarcTempfail.text} (${printable(f.detail)})`) } : null,
};
