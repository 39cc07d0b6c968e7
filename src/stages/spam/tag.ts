/**
 * spam-tag: the spam category's edits of the message, in the edit phase, from what the spam
 * stage recorded (SPAM_RESULT): a check must see the message as it arrived, and the edits
 * must come before signing. A bank that lists spam must list spam-tag (the spam stage's load
 * check), so the removal can never be left out by mistake.
 *
 * - spam.removeExistingHeaders: every X-Spam-* field the message arrived with is removed
 *   (amavisd $remove_existing_spam_headers removes its seven X-Spam-* names; all of them go
 *   here, as any could be read as ours), whenever the spam stage ran on the message. Ours are
 *   added after this by the verdict. Finding SPAM_TAG_HEADERS_REMOVED (detail: the names).
 * - spam.subjectTag: put before the Subject of spam (tag2 and above; amavisd
 *   $sa_spam_subject_tag), every Subject field, the rest of each field's bytes as they came;
 *   a message without Subject gets one, a Subject that starts with the tag already is left. Not on originating banks (amavisd tags local
 *   recipients' mail only). Finding SPAM_TAG_SUBJECT.
 * The Subject tag breaks DKIM signatures that cover Subject (nearly all), as with amavisd;
 * verification (dkim-verify, dmarc) ran before, on the message as it arrived.
 */
import libmime from 'libmime';
import { defineStage, type Finding } from '../../pipeline/stage';
import { makeField, type HeaderField } from '../../transaction/message';
import { SPAM_RESULT } from './result';
import type { SpamSettings } from './schema';
import { spamBankSchema } from './schema';

const FINDINGS = ['SPAM_TAG_HEADERS_REMOVED', 'SPAM_TAG_SUBJECT'] as const;

/** RFC 5322 2.1.1: a line is at most 998 octets without its CRLF. */
const MAX_LINE_OCTETS = 998;

/**
 * The tag, then the field's value from its first non-blank byte on (folding and encoded words
 * kept); the field as it came when its value already starts with the tag (the message passed
 * a filter with this tag before: a .forward back through postseal, a second MX), so spam is
 * never tagged twice (also when that pass folded after the tag, or the tag came back encoded).
 * When the tag would take the first line past 998 octets, the field is folded after the tag
 * (where its trailing space was: the unfolded value is the same; a tag without one gets a space).
 */
export function taggedSubject(field: HeaderField, tag: string): HeaderField {
  const value = field.raw.subarray(field.raw.indexOf(0x3a) + 1);
  let i = 0;
  while (i < value.length && (value[i] === 0x20 || value[i] === 0x09 || value[i] === 0x0d || value[i] === 0x0a)) i++;
  if (i === value.length) return makeField(field.name, tag.trimEnd());
  const rest = value.subarray(i);
  if (startsWithTag(rest, tag)) return field;
  const head = Buffer.from(`${field.name}: ${tag}`, 'latin1');
  const eol = rest.indexOf('\r\n');
  const firstLine = head.length + (eol < 0 ? rest.length : eol);
  if (firstLine <= MAX_LINE_OCTETS) return { name: field.name, key: field.key, raw: Buffer.concat([head, rest]) };
  return { name: field.name, key: field.key, raw: Buffer.concat([Buffer.from(`${field.name}: ${tag.trimEnd()}\r\n `, 'latin1'), rest]) };
}

/**
 * Whether a Subject value already starts with the tag: as it reads, that is unfolded (a first
 * pass may have folded after the tag) and with its RFC 2047 encoded words decoded (a list server
 * or another MX may have encoded the whole Subject, tag and all: "=?UTF-8?Q?***SPAM***_x?=").
 */
function startsWithTag(rest: Buffer, tag: string): boolean {
  const unfolded = rest
    .toString('latin1')
    .replace(/\r?\n(?=[ \t])/g, '')
    .replace(/\r?\n$/, '');
  const check = (text: string) => text.startsWith(tag) || text === tag.trimEnd();
  if (check(unfolded)) return true;
  if (!unfolded.startsWith('=?')) return false;
  try {
    return check(libmime.decodeWords(unfolded));
  } catch {
    return false;
  }
}

export const spamTagStage = defineStage<SpamSettings, (typeof FINDINGS)[number]>({
  id: 'spam-tag',
  phase: 'edit',
  settings: { key: 'spam', schema: spamBankSchema },
  findings: FINDINGS,
  create: (settings, bank) => ({
    id: 'spam-tag',
    async run(tx, _signal, results) {
      const spam = results.get(SPAM_RESULT);
      if (!spam) return { findings: [] };
      const findings: Finding[] = [];
      let fields = tx.message.fields;
      if (settings.removeExistingHeaders) {
        const theirs = fields.filter((f) => f.key.startsWith('x-spam-'));
        if (theirs.length) {
          fields = fields.filter((f) => !f.key.startsWith('x-spam-'));
          findings.push({ code: 'SPAM_TAG_HEADERS_REMOVED', detail: [...new Set(theirs.map((f) => f.name))].join(',').slice(0, 200) });
        }
      }
      const tag = settings.subjectTag;
      if (spam.spammy && tag !== '' && !bank.originating) {
        const has = fields.some((f) => f.key === 'subject');
        const tagged = has ? fields.map((f) => (f.key === 'subject' ? taggedSubject(f, tag) : f)) : [makeField('Subject', tag.trimEnd()), ...fields];
        // A Subject that already starts with the tag is left as it came: no edit, no finding.
        if (tagged.some((f, n) => f !== fields[n]) || !has) {
          fields = tagged;
          findings.push({ code: 'SPAM_TAG_SUBJECT', detail: has ? `"${tag}" put before the Subject` : `no Subject: added "${tag.trimEnd()}"` });
        }
      }
      return findings.length ? { findings, message: tx.message.withFields(fields) } : { findings };
    },
  }),
});
