/**
 * header-sanity: malformed messages that break later hops or let a sender confuse the
 * reader (amavisd "bad header" checks).
 *
 * Findings: HEADER_SANITY_NUL (NUL anywhere), HEADER_SANITY_EIGHT_BIT_HEADER (8-bit bytes in
 * a header field without SMTPUTF8, RFC 6532), HEADER_SANITY_LONG_HEADER_LINE and
 * HEADER_SANITY_LONG_BODY_LINE (over 998 octets, RFC 5322 2.1.1), HEADER_SANITY_MISSING_FROM
 * and HEADER_SANITY_MULTIPLE_FROM (RFC 5322 3.6). With `fix` the message is repaired and
 * HEADER_SANITY_FIXED says how; `reject` meets headerSanity.destiny (amavisd
 * $final_bad_header_destiny; reject: 550 5.6.0, see rejectWhen). Recipient exceptions
 * (pipeline/destiny.ts, every recipient must be covered): `bypass` skips the stage
 * (HEADER_SANITY_BYPASSED); for `lovers` the findings a kind would reject for are reported as
 * one HEADER_SANITY_LOVED instead, delivered with X-Postseal-Alert. First of all, with
 * removeOwnFields, the fields only postseal may write are removed when a sender wrote them
 * (own-fields.ts; HEADER_SANITY_OWN_FIELDS_REMOVED naming them). Reads: headerSanity.*,
 * virus.scannedHeaderValue.
 * Only the fields it repairs are rewritten; every other byte stays as received.
 */
import libmime from 'libmime';
import { coversAllRecipients, destinyDecision } from '../../pipeline/destiny';
import { defineStage, type Finding, type Rule, type StageDeps, type StageOutcome } from '../../pipeline/stage';
import type { Transaction } from '../../transaction/transaction';
import { replies, withText } from '../../smtp/replies';
import { Message, type HeaderField } from '../../transaction/message';
import { spoolFromChunks } from '../../transaction/spool';
import { ourScannedValue, withoutOwnFields } from './own-fields';
import { headerSanityBankSchema, type HeaderSanitySettings } from './schema';

const MAX_LINE = 998;

interface FieldProblems {
  nul: boolean;
  eightBit: boolean;
  longLine: boolean;
}

const FINDINGS = [
  'HEADER_SANITY_NUL',
  'HEADER_SANITY_EIGHT_BIT_HEADER',
  'HEADER_SANITY_LONG_HEADER_LINE',
  'HEADER_SANITY_LONG_BODY_LINE',
  'HEADER_SANITY_MISSING_FROM',
  'HEADER_SANITY_MULTIPLE_FROM',
  'HEADER_SANITY_FIXED',
  'HEADER_SANITY_LOVED',
  'HEADER_SANITY_BYPASSED',
  'HEADER_SANITY_OWN_FIELDS_REMOVED',
] as const;

/** Which setting decides each finding a kind can be rejected for. */
const SETTING_OF: Partial<Record<(typeof FINDINGS)[number], keyof HeaderSanitySettings>> = {
  HEADER_SANITY_NUL: 'nul',
  HEADER_SANITY_EIGHT_BIT_HEADER: 'eightBitHeader',
  HEADER_SANITY_LONG_HEADER_LINE: 'longLine',
  HEADER_SANITY_LONG_BODY_LINE: 'longLine',
  HEADER_SANITY_MISSING_FROM: 'missingFrom',
  HEADER_SANITY_MULTIPLE_FROM: 'multipleFrom',
};

export const ALERT_FIELD = 'X-Postseal-Alert';

/**
 * The finding meets headerSanity.destiny (amavisd $final_bad_header_destiny) when the setting
 * it belongs to says reject: reject = 550 5.6.0 with the reply naming the finding, so the
 * sender's bounce says what to fix; pass = delivered with X-Postseal-Alert. Fixed words, not
 * the detail: the detail holds field names the sender chose.
 */
const rejectWhen =
  (setting: keyof HeaderSanitySettings, why: string): Rule<HeaderSanitySettings> =>
  (s) =>
    s[setting] === 'reject'
      ? destinyDecision(
          s.destiny,
          withText(replies.headerRejected, `${replies.headerRejected.text}: ${why}`),
          [{ name: ALERT_FIELD, value: `BAD HEADER SECTION, ${why}` }],
          'bad-header',
        )
      : null;

export const headerSanityStage = defineStage<HeaderSanitySettings, (typeof FINDINGS)[number]>({
  id: 'header-sanity',
  phase: 'check',
  after: ['loop-guard'],
  settings: { key: 'headerSanity', schema: headerSanityBankSchema },
  findings: FINDINGS,
  rules: {
    HEADER_SANITY_NUL: rejectWhen('nul', 'NUL character in the message'),
    HEADER_SANITY_EIGHT_BIT_HEADER: rejectWhen('eightBitHeader', '8-bit characters in a header field without SMTPUTF8'),
    HEADER_SANITY_LONG_HEADER_LINE: rejectWhen('longLine', 'header line longer than 998 characters'),
    HEADER_SANITY_LONG_BODY_LINE: rejectWhen('longLine', 'body line longer than 998 characters'),
    HEADER_SANITY_MISSING_FROM: rejectWhen('missingFrom', 'no From field'),
    HEADER_SANITY_MULTIPLE_FROM: rejectWhen('multipleFrom', 'several From fields'),
    // The detail is our own finding codes (lovedFindings), never the sender's bytes.
    HEADER_SANITY_LOVED: (_s, _b, f) => ({ action: 'tag', fields: [{ name: ALERT_FIELD, value: `BAD HEADER SECTION, ${f.detail ?? ''}` }] }),
  },
  create: (actions, bank, deps) => {
    const scannedValue = ourScannedValue(bank, deps.authservId);
    return {
      id: 'header-sanity',
      async run(tx, signal) {
        // Before the exceptions: a bypassed message must not carry forged fields either.
        const scrub = actions.removeOwnFields ? withoutOwnFields(tx.message, scannedValue) : undefined;
        const removed: Finding[] = scrub ? [{ code: 'HEADER_SANITY_OWN_FIELDS_REMOVED', detail: scrub.removed.join(',') }] : [];
        const current = scrub ? { ...tx, message: scrub.message } : tx;
        if (coversAllRecipients(actions.bypass, tx)) return { findings: [...removed, { code: 'HEADER_SANITY_BYPASSED' }], message: scrub?.message };
        const loved = coversAllRecipients(actions.lovers, tx);
        const outcome = await inspect(current, signal, actions, deps);
        const findings = [...removed, ...(loved ? lovedFindings(outcome.findings, actions) : outcome.findings)];
        return { ...outcome, findings, message: outcome.message ?? scrub?.message };
      },
    };
  },
});

/** For lovers: the findings their settings would reject for become one HEADER_SANITY_LOVED naming them. */
function lovedFindings(findings: readonly Finding[], actions: HeaderSanitySettings): Finding[] {
  const rejecting = findings.filter((f) => {
    const setting = SETTING_OF[f.code as keyof typeof SETTING_OF];
    return setting !== undefined && actions[setting] === 'reject';
  });
  if (rejecting.length === 0) return [...findings];
  const rest = findings.filter((f) => !rejecting.includes(f));
  return [...rest, { code: 'HEADER_SANITY_LOVED', detail: rejecting.map((f) => f.code.replace('HEADER_SANITY_', '').toLowerCase()).join(', ') }];
}

/** The checks and the fixes their settings ask for. */
async function inspect(tx: Readonly<Transaction>, signal: AbortSignal, actions: HeaderSanitySettings, deps: StageDeps): Promise<StageOutcome> {
  const msg = tx.message;
  const findings: Finding[] = [];
  const perField = msg.fields.map((f) => inspectField(f.raw, !tx.envelope.smtputf8));
  const body = await inspectBody(msg.openBody(), signal);
  const nul = perField.some((p) => p.nul) || body.nul;
  if (nul) findings.push({ code: 'HEADER_SANITY_NUL', detail: body.nul ? 'in body' : 'in header' });
  const eightBit = msg.fields.filter((_, i) => perField[i].eightBit).map((f) => f.name);
  if (eightBit.length) findings.push({ code: 'HEADER_SANITY_EIGHT_BIT_HEADER', detail: eightBit.join(',') });
  const longFields = msg.fields.filter((_, i) => perField[i].longLine).map((f) => f.name);
  if (longFields.length) findings.push({ code: 'HEADER_SANITY_LONG_HEADER_LINE', detail: longFields.join(',') });
  if (body.longestLine > MAX_LINE) findings.push({ code: 'HEADER_SANITY_LONG_BODY_LINE', detail: `${body.longestLine} octets` });
  const froms = msg.get('from').length;
  if (froms === 0) findings.push({ code: 'HEADER_SANITY_MISSING_FROM' });
  if (froms > 1) findings.push({ code: 'HEADER_SANITY_MULTIPLE_FROM', detail: `${froms} From fields` });

  const fixNul = nul && actions.nul === 'fix';
  const fix8 = eightBit.length > 0 && actions.eightBitHeader === 'fix';
  const fixLong = longFields.length > 0 && actions.longLine === 'fix';
  if (!fixNul && !fix8 && !fixLong) return { findings };

  const fields = msg.fields.map((f, i) => {
    const p = perField[i];
    return (fixNul && p.nul) || (fix8 && p.eightBit) || (fixLong && p.longLine) ? rewriteField(f, fixNul) : f;
  });
  let fixed = msg.withFields(fields);
  if (fixNul && body.nul)
    fixed = Message.parse(await spoolFromChunks(withoutNul(fixed.openRaw()), { ...deps.spool, headBytes: fixed.headerSize + 1, maxSizeBytes: Infinity, signal }));
  const what = [fixNul && 'nul removed', fix8 && '8-bit fields encoded', fixLong && 'long header lines folded'].filter(Boolean);
  findings.push({ code: 'HEADER_SANITY_FIXED', detail: what.join(', ') });
  return { findings, message: fixed };
}

function inspectField(raw: Buffer, eightBitIsBad: boolean): FieldProblems {
  let longLine = false;
  let start = 0;
  for (let nl = raw.indexOf(0x0a); start < raw.length; nl = raw.indexOf(0x0a, start)) {
    const end = nl < 0 ? raw.length : nl;
    const len = end - start - (end > start && raw[end - 1] === 0x0d ? 1 : 0);
    if (len > MAX_LINE) longLine = true;
    start = end + 1;
  }
  return { nul: raw.includes(0), eightBit: eightBitIsBad && raw.some((b) => b >= 0x80), longLine };
}

async function inspectBody(body: AsyncIterable<Buffer>, signal: AbortSignal): Promise<{ nul: boolean; longestLine: number }> {
  let nul = false;
  let longest = 0;
  let current = 0;
  for await (const buf of body) {
    signal.throwIfAborted();
    if (!nul && buf.includes(0)) nul = true;
    let start = 0;
    for (let nl = buf.indexOf(0x0a); nl >= 0; nl = buf.indexOf(0x0a, start)) {
      current += nl - start;
      longest = Math.max(longest, current - (nl > 0 && buf[nl - 1] === 0x0d ? 1 : 0));
      current = 0;
      start = nl + 1;
    }
    current += buf.length - start;
  }
  return { nul, longestLine: Math.max(longest, current) };
}

/** Unfolds, drops NULs, decodes 8-bit as UTF-8 (Latin-1 if it is not UTF-8), encodes words and refolds. */
function rewriteField(field: HeaderField, dropNul: boolean): HeaderField {
  let bytes = field.raw.subarray(field.raw.indexOf(0x3a) + 1);
  if (dropNul) bytes = Buffer.from(bytes.filter((b) => b !== 0));
  let value: string;
  try {
    value = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    value = bytes.toString('latin1');
  }
  value = value
    .replace(/\r?\n(?=[ \t])/g, '')
    .replace(/\r?\n$/, '')
    .trim();
  const encoded = /[^\x00-\x7f]/.test(value) ? libmime.encodeWords(value, 'Q', 52) : value;
  const folded = libmime.foldLines(`${field.name}: ${encoded}`, 78).replace(/\r?\n/g, '\r\n');
  return { name: field.name, key: field.key, raw: Buffer.from(`${folded}\r\n`, 'latin1') };
}

async function* withoutNul(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  for await (const buf of source) {
    yield buf.includes(0) ? Buffer.from(buf.filter((b) => b !== 0)) : buf;
  }
}
