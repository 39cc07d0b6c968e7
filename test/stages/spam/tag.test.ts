/**
 * The spam-tag stage: the Subject tag and the removal of X-Spam-* fields a sender wrote, from
 * the SPAM_RESULT the spam stage hands on (no scanner needed).
 */
import { ResultSet } from '../../../src/lib/results';
import { SPAM_RESULT, type SpamResult, spamTagStage } from '../../../src/stages/spam';
import { taggedSubject } from '../../../src/stages/spam/tag';
import { Message } from '../../../src/transaction/message';
import { memorySpool } from '../../../src/transaction/spool';
import { loadTestBank } from '../../helpers/banks';
import { stageFor, testStageDeps, testTransaction } from '../../helpers/stage-run';

const subjectOf = (raw: string) => Message.parse(memorySpool(Buffer.from(`${raw}From: a@b.test\r\n\r\nx\r\n`))).get('subject')[0];

describe('the Subject tag', () => {
  it('goes before the value, whose bytes stay as they came (encoded words, folding)', () => {
    const f = taggedSubject(subjectOf('Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n more\r\n'), '***SPAM*** ');
    expect(f.raw.toString()).toBe('Subject: ***SPAM*** =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n more\r\n');
  });

  it('is the whole Subject of an empty one', () => {
    expect(taggedSubject(subjectOf('Subject:   \r\n'), '***SPAM*** ').raw.toString()).toBe('Subject: ***SPAM***\r\n');
  });

  it('is not put twice: a Subject that starts with it already (the message passed postseal before) stays as it came', () => {
    for (const raw of ['Subject: ***SPAM*** cheap\r\n', 'Subject:\r\n ***SPAM*** cheap\r\n', 'Subject: ***SPAM***\r\n']) {
      const field = subjectOf(raw);
      expect(taggedSubject(field, '***SPAM*** ')).toBe(field);
    }
  });

  it('is not put twice on a Subject it folded after the tag on an earlier pass', () => {
    const once = taggedSubject(subjectOf(`Subject: ${'x'.repeat(985)}\r\n`), '***SPAM*** ');
    expect(taggedSubject(once, '***SPAM*** ')).toBe(once);
  });

  it('is not put twice on a Subject whose tag came back in an encoded word (a list server re-encoded it)', () => {
    for (const raw of ['Subject: =?UTF-8?Q?***SPAM***_Gr=C3=BC=C3=9Fe?=\r\n', 'Subject: =?utf-8?B?KioqU1BBTSoqKiBjaGVhcA==?=\r\n']) {
      const field = subjectOf(raw);
      expect(taggedSubject(field, '***SPAM*** ')).toBe(field);
    }
  });

  it('folds after the tag when the tag would take the first line past 998 octets, the unfolded value unchanged', () => {
    const long = 'x'.repeat(985);
    const f = taggedSubject(subjectOf(`Subject: ${long}\r\n`), '***SPAM*** ');
    const lines = f.raw.toString('latin1').split('\r\n');
    expect(Math.max(...lines.map((l) => l.length))).toBeLessThanOrEqual(998);
    expect(f.raw.toString('latin1').replace(/\r\n(?=[ \t])/g, '')).toBe(`Subject: ***SPAM*** ${long}\r\n`);
  });

  it('keeps 8-bit bytes of the Subject as they came', () => {
    const raw = Buffer.concat([Buffer.from('Subject: '), Buffer.from([0xc3, 0xa4]), Buffer.from('\r\nFrom: a@b.test\r\n\r\nx\r\n')]);
    const f = taggedSubject(Message.parse(memorySpool(raw)).get('subject')[0], '[SPAM] ');
    expect(f.raw).toEqual(Buffer.concat([Buffer.from('Subject: [SPAM] '), Buffer.from([0xc3, 0xa4]), Buffer.from('\r\n')]));
  });
});

describe('the spam-tag stage', () => {
  const deps = testStageDeps({ server: '127.0.0.1:1' });
  const run = async (overlay: Record<string, unknown>, result: SpamResult | undefined, data: string) => {
    const bank = loadTestBank({ stages: ['spam', 'spam-tag'], ...overlay, spam: { spamd: { enabled: true }, subjectTag: '[SPAM] ', ...(overlay.spam as object) } });
    const results = new ResultSet();
    if (result) results.add([SPAM_RESULT.entry(result)]);
    const outcome = await stageFor(spamTagStage, bank, deps).run(testTransaction(data, { bank }), new AbortController().signal, results);
    const head = outcome.message ? outcome.message.headerBytes().toString('latin1') : undefined;
    return { findings: outcome.findings, head };
  };
  const forged = 'X-Spam-Flag: NO\r\nFrom: a@b.test\r\nX-Spam-Score: -50\r\n\r\nbody\r\n';

  it('adds a Subject holding the tag to spam without one', async () => {
    const { head, findings } = await run({}, { score: 9, spammy: true }, 'From: a@b.test\r\n\r\nbody\r\n');
    expect(head).toBe('Subject: [SPAM]\r\nFrom: a@b.test\r\n\r\n');
    expect(findings).toEqual([{ code: 'SPAM_TAG_SUBJECT', detail: 'no Subject: added "[SPAM]"' }]);
  });

  it('leaves a Subject tagged on an earlier pass as it is, with no finding', async () => {
    const { head, findings } = await run({ spam: { removeExistingHeaders: false } }, { score: 9, spammy: true }, 'Subject: [SPAM] cheap\r\nFrom: a@b.test\r\n\r\nbody\r\n');
    expect(head).toBeUndefined();
    expect(findings).toEqual([]);
  });

  it('tags every Subject field, not only the first', async () => {
    const { head } = await run({}, { score: 9, spammy: true }, 'Subject: one\r\nSubject: two\r\nFrom: a@b.test\r\n\r\nbody\r\n');
    expect(head).toBe('Subject: [SPAM] one\r\nSubject: [SPAM] two\r\nFrom: a@b.test\r\n\r\n');
  });

  it('does not tag the Subject of outgoing mail (originating bank), but still removes forged fields', async () => {
    const { head, findings } = await run({ originating: true }, { score: 9, spammy: true }, `Subject: hi\r\n${forged}`);
    expect(head).toBe('Subject: hi\r\nFrom: a@b.test\r\n\r\n');
    expect(findings.map((f) => f.code)).toEqual(['SPAM_TAG_HEADERS_REMOVED']);
  });

  it('keeps the fields a sender wrote with removeExistingHeaders off', async () => {
    const { head, findings } = await run({ spam: { removeExistingHeaders: false } }, { spammy: false }, forged);
    expect(head).toBeUndefined();
    expect(findings).toEqual([]);
  });

  it('does nothing when the spam stage did not run on the message', async () => {
    expect(await run({}, undefined, `Subject: hi\r\n${forged}`)).toEqual({ findings: [], head: undefined });
  });
});
