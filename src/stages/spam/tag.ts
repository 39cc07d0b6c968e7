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
 *   a message without Subject gets one. Not on originating banks (amavisd tags local
 *   recipients' mail only). Finding SPAM_TAG_SUBJECT.
 * The Subject tag breaks DKIM signatures that cover Subject (nearly all), as with amavisd;
 * verification (dkim-verify, dmarc) ran before, on the message as it arrived.
 */
import { defineStage, type Finding } from '../../pipeline/stage';
import { makeField, type HeaderField } from '../../transaction/message';
import { SPAM_RESULT } from './result';
import type { SpamSettings } from './schema';
import { spamBankSchema } from './schema';

const FINDINGS = ['SPAM_TAG_HEADERS_REMOVED', 'SPAM_TAG_SUBJECT'] as const;

/** The tag, then the field's value from its first non-blank byte on (folding and encoded words kept). */
export function taggedSubject(field: HeaderField, tag: string): HeaderField {
  const value = field.raw.subarray(field.raw.indexOf(0x3a) + 1);
  let i = 0;
  while (i < value.length && (value[i] === 0x20 || value[i] === 0x09 || value[i] === 0x0d || value[i] === 0x0a)) i++;
  if (i === value.length) return makeField(field.name, tag.trimEnd());
  return { name: field.name, key: field.key, raw: Buffer.concat([Buffer.from(`${field.name}: ${tag}`, 'latin1'), value.subarray(i)]) };
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
        fields = has ? fields.map((f) => (f.key === 'subject' ? taggedSubject(f, tag) : f)) : [makeField('Subject', tag.trimEnd()), ...fields];
        findings.push({ code: 'SPAM_TAG_SUBJECT', detail: has ? `"${tag}" put before the Subject` : `no Subject: added "${tag.trimEnd()}"` });
      }
      return findings.length ? { findings, message: tx.message.withFields(fields) } : { findings };
    },
  }),
});
