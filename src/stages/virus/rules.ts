/**
 * What the virus stage's findings mean, given the bank's virus settings: a virus meets the
 * destiny (reject = 554 5.7.0 naming it, discard, quarantine, bounce, or pass = delivered with
 * X-Postseal-Alert; a bounce becomes a discard when a name matches virus.fakeSenderNames); a
 * virus for lovers only is delivered with X-Postseal-Alert; clean mail gets X-Virus-Scanned; a
 * scanner failure and an unscanned big message are tempfails or pass with their finding (an
 * unscanned one with X-Postseal-Alert: UNCHECKED), as onScannerFailure and onTooBig say (a big one may also be refused, 552 5.3.4: onTooBig
 * auto does that on a bank that signs, where unscanned mail must not leave signed).
 * VIRUS_BYPASSED decides nothing.
 *
 * Rules see no recipients (they are compiled per bank): the stage tells lovers apart by the
 * finding it reports (VIRUS_FOUND_LOVED), pipeline/destiny.ts.
 */
import { destinyDecision, signsMail } from '../../pipeline/destiny';
import type { Decision, Rule } from '../../pipeline/stage';
import { replies, withText } from '../../smtp/replies';
import type { VirusSettings } from './schema';

export const VIRUS_FINDINGS = ['VIRUS_CLEAN', 'VIRUS_FOUND', 'VIRUS_FOUND_LOVED', 'VIRUS_SCANNER_FAILED', 'VIRUS_NOT_SCANNED_TOO_BIG', 'VIRUS_BYPASSED'] as const;
export type VirusFinding = (typeof VIRUS_FINDINGS)[number];

export const SCANNED_FIELD = 'X-Virus-Scanned';
/** For infected mail that is delivered (lovers, destiny pass), with amavisd-new's X-Amavis-Alert text; the field header-sanity's lovers get too. */
export const ALERT_FIELD = 'X-Postseal-Alert';

/** The names in a reply or a header field: the detail is clamd's names (already printable ASCII, lib/clamd), cut short. */
const MAX_NAMES_TEXT = 200;

function namesText(detail: string | undefined): string {
  const text = (detail ?? 'unknown').replace(/[^\x20-\x7e]/g, '?');
  return text.length > MAX_NAMES_TEXT ? `${text.slice(0, MAX_NAMES_TEXT)}...` : text;
}

function scanned(s: VirusSettings, authservId: string): Decision['fields'] {
  return s.scannedHeader ? [{ name: SCANNED_FIELD, value: s.scannedHeaderValue || `postseal at ${authservId}` }] : [];
}

function infectedFields(s: VirusSettings, names: string, authservId: string): NonNullable<Decision['fields']> {
  return [...(scanned(s, authservId) ?? []), { name: ALERT_FIELD, value: `INFECTED, message contains virus: ${names}` }];
}

const fakeSenderPatterns = new WeakMap<readonly string[], RegExp[]>();

/** Whether one of clamd's names is of a virus known to fake its sender (virus.fakeSenderNames; checked at load). */
function fakesSender(s: VirusSettings, detail: string | undefined): boolean {
  let res = fakeSenderPatterns.get(s.fakeSenderNames);
  if (!res) fakeSenderPatterns.set(s.fakeSenderNames, (res = s.fakeSenderNames.map((p) => new RegExp(p, 'i'))));
  const names = (detail ?? '').split(', ');
  return res.some((re) => names.some((n) => re.test(n)));
}

/** No DSN to a sender a virus most likely forged (amavisd @viruses_that_fake_sender_maps): the bounce is a discard, and its reply says why. */
const NO_DSN = withText(replies.discarded, `${replies.discarded.text}, no DSN: the virus is known to fake its sender`);

/** On a signing bank the sender is our own user, not forged: the bounce stays one, so that they hear of it. */
const found: Rule<VirusSettings> = (s, bank, f, ctx) => {
  const names = namesText(f.detail);
  const destiny = s.destiny === 'bounce' && !signsMail(bank) && fakesSender(s, f.detail) ? 'discard' : s.destiny;
  return destinyDecision(destiny, withText(replies.virusRejected, `${replies.virusRejected.text} (${names})`), infectedFields(s, names, ctx.authservId), 'virus', NO_DSN);
};

function tooBig(how: Exclude<VirusSettings['onTooBig'], 'auto'>): Decision | null {
  if (how === 'tempfail') return { action: 'tempfail', reply: replies.virusScanTooBig };
  return how === 'reject' ? { action: 'reject', reply: replies.virusScanTooBigRefused } : null;
}

export const virusRules: Partial<Record<VirusFinding, Rule<VirusSettings>>> = {
  VIRUS_CLEAN: (s, _b, _f, ctx) => (s.scannedHeader ? { action: 'tag', fields: scanned(s, ctx.authservId) } : null),
  VIRUS_FOUND: found,
  VIRUS_FOUND_LOVED: (s, _b, f, ctx) => ({ action: 'tag', fields: infectedFields(s, namesText(f.detail), ctx.authservId) }),
  VIRUS_SCANNER_FAILED: (s) => (s.onScannerFailure === 'tempfail' ? { action: 'tempfail', reply: replies.virusScanFailed } : null),
  // Delivered unscanned, the mail says so (amavisd's X-Amavis-Alert: UNCHECKED), not only the log.
  VIRUS_NOT_SCANNED_TOO_BIG: (s, bank, f) =>
    tooBig(s.onTooBig === 'auto' ? (signsMail(bank) ? 'reject' : 'pass') : s.onTooBig) ?? {
      action: 'tag',
      fields: [{ name: ALERT_FIELD, value: `UNCHECKED, not scanned for viruses: ${namesText(f.detail)}` }],
    },
};
