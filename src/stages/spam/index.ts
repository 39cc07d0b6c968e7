/**
 * spam: scores the message with SpamAssassin's spamd and/or rspamd (scan.ts) and reports the
 * level the bank's thresholds give it, the amavisd-new way (amavisd's $sa_tag_level_deflt,
 * $sa_tag2_level_deflt, $sa_kill_level_deflt, $final_spam_destiny, @spam_lovers_maps,
 * @bypass_spam_checks_maps, $sa_mail_body_size_limit). Phase check, after every other check,
 * so that the scanners' work is spent only on mail the cheaper checks let through.
 *
 * Findings (detail: `score=<n> tests=[...]` and the scanners' own words, headers.ts):
 * - SPAM_CLEAN: below tagLevel; no header field.
 * - SPAM_TAGGED: at or above tagLevel: X-Spam-Flag: NO, X-Spam-Score, X-Spam-Level, X-Spam-Status.
 * - SPAM_SPAMMY: at or above tag2Level: the same with X-Spam-Flag: YES.
 * - SPAM_KILL: at or above killLevel: spam.destiny (reject: 554 5.7.0; pass: tagged as spammy;
 *   bounce: a discard instead at or above dsnCutoffLevel).
 * - SPAM_KILL_LOVED: the same, but every recipient is in spam.lovers: tagged as spammy.
 * - SPAM_TRUNCATED: the body is over spam.maxScanBytes, so the scanners got the header and
 *   the body cut there (scan.ts, as amavisd does); the score above is theirs for that copy.
 *   SPAM_BYPASSED: every recipient in spam.bypass.
 * - SPAM_SCANNER_FAILED: a scanner down, slow or answering garbage: 451 4.3.0, or with
 *   onScannerFailure: pass, delivered as the other scanner (if any) scored it.
 * - SPAM_SCANNER_SKIPPED: rspamd answered is_skipped (ran no rule); not counted as a score.
 * - SPAM_SOFT_REJECT: rspamd's action soft reject with honourAction (its ratelimit or
 *   greylisting): 451 4.7.1, Postfix retries.
 * On originating banks no X-Spam-* field is added (amavisd adds them for local recipients
 * only). On signing banks (dkim-sign) the load check refuses destiny pass and discard, lovers
 * and onScannerFailure pass, and a bounce is never turned into a discard: our users' spam is
 * not signed, and they hear of it.
 *
 * The fields come through the verdict (tag decisions); removing a sender's X-Spam-* fields and
 * the Subject tag are edits, made by the spam-tag stage (tag.ts) from the SPAM_RESULT this
 * stage hands on. Reads: spam.*, originating, stages (signing), timeouts.stageTimeoutMs.
 */
import { createRspamdClient } from '../../lib/rspamd/client';
import type { CommonBank } from '../../config/bank-schema';
import { coversAllRecipients, destinyDecision, SIGNING_DESTINIES, signsMail } from '../../pipeline/destiny';
import { defineStage, type Decision, type Finding, type Rule } from '../../pipeline/stage';
import { PostsealError } from '../../errors';
import { replies } from '../../smtp/replies';
import { SPAM_RESULT } from './result';
import { parseScoreDetail, scoreDetail, spamFields } from './headers';
import { scanMessage, type Scanners } from './scan';
import type { SpamSettings } from './schema';
import { spamBankSchema } from './schema';

export { spamTagStage } from './tag';
export { SPAM_RESULT, type SpamResult } from './result';

const FINDINGS = [
  'SPAM_CLEAN',
  'SPAM_TAGGED',
  'SPAM_SPAMMY',
  'SPAM_KILL',
  'SPAM_KILL_LOVED',
  'SPAM_TRUNCATED',
  'SPAM_BYPASSED',
  'SPAM_SCANNER_FAILED',
  'SPAM_SCANNER_SKIPPED',
  'SPAM_SOFT_REJECT',
] as const;

/** The header fields of a scored finding; none on originating banks (outgoing mail). */
function fieldsOf(s: SpamSettings, originating: boolean, f: Finding, spammy: boolean): Decision['fields'] {
  const d = parseScoreDetail(f.detail);
  return originating || !d ? [] : spamFields(s, d.score, d.tests, spammy);
}

/**
 * A bounce of spam at or above dsnCutoffLevel is a discard: its sender is almost always forged
 * (amavisd $sa_dsn_cutoff_level). Not on a signing bank: there the sender is our own user, who
 * must hear that the mail was refused.
 */
function noBackscatter(s: SpamSettings, bank: CommonBank, f: Finding): SpamSettings['destiny'] {
  if (s.destiny !== 'bounce' || signsMail(bank)) return s.destiny;
  const d = parseScoreDetail(f.detail);
  return !d || d.score >= s.dsnCutoffLevel ? 'discard' : 'bounce';
}

const tag =
  (spammy: boolean): Rule<SpamSettings> =>
  (s, bank, f) => ({ action: 'tag', fields: fieldsOf(s, bank.originating, f, spammy) });

export const spamStage = defineStage<SpamSettings, (typeof FINDINGS)[number]>({
  id: 'spam',
  phase: 'check',
  // Cheaper checks first: a message they reject costs no scan. Names of stages a bank does not list are ignored.
  after: ['loop-guard', 'header-sanity', 'dkim-verify', 'spf', 'dmarc', 'arc-verify', 'banned', 'virus'],
  settings: { key: 'spam', schema: spamBankSchema },
  findings: FINDINGS,
  rules: {
    SPAM_TAGGED: tag(false),
    SPAM_SPAMMY: tag(true),
    SPAM_KILL_LOVED: tag(true),
    SPAM_KILL: (s, bank, f) => destinyDecision(noBackscatter(s, bank, f), replies.spamRejected, fieldsOf(s, bank.originating, f, true), 'spam'),
    SPAM_SCANNER_FAILED: (s) => (s.onScannerFailure === 'tempfail' ? { action: 'tempfail', reply: replies.spamScannerFailed } : null),
    SPAM_SOFT_REJECT: () => ({ action: 'tempfail', reply: replies.spamSoftReject }),
  },
  check(s, bank, where) {
    const fix = (what: string, how: string) => new PostsealError('CFG_INCONSISTENT', `${where}: /spam/${what}; ${how}`);
    if (!s.spamd.enabled && !s.rspamd.enabled)
      throw fix('spamd/enabled', 'the bank lists the spam stage but neither spam.spamd.enabled nor spam.rspamd.enabled is true: enable one');
    for (const name of ['spamd', 'rspamd'] as const) {
      if (s[name].enabled && s[name].timeoutMs >= bank.timeouts.stageTimeoutMs)
        throw fix(
          `${name}/timeoutMs`,
          `${s[name].timeoutMs} is not below timeouts.stageTimeoutMs (${bank.timeouts.stageTimeoutMs}): lower it, so a slow scanner is the scanner failure it is`,
        );
    }
    if (!(s.tagLevel <= s.tag2Level && s.tag2Level <= s.killLevel))
      throw fix('tag2Level', `the levels must rise: tagLevel ${s.tagLevel} <= tag2Level ${s.tag2Level} <= killLevel ${s.killLevel}`);
    if (!bank.stages.includes('spam-tag'))
      throw fix('removeExistingHeaders', 'the bank lists spam without spam-tag: add spam-tag to its stages (it removes X-Spam-* fields a sender wrote, and adds the Subject tag)');
    if (signsMail(bank)) {
      if (s.destiny === 'pass') throw fix('destiny', 'this bank signs (dkim-sign), and spam it would pass gets signed: set destiny to reject (the default), bounce or quarantine');
      if (!SIGNING_DESTINIES.includes(s.destiny))
        throw fix(
          'destiny',
          `this bank signs (dkim-sign), and "${s.destiny}" drops our user's spam without a clear reply to them: set destiny to reject (the default), bounce or quarantine`,
        );
      if (s.lovers.length) throw fix('lovers', 'this bank signs (dkim-sign), and spam delivered to lovers gets signed: remove lovers');
      if (s.onScannerFailure === 'pass')
        throw fix('onScannerFailure', 'this bank signs (dkim-sign), and "pass" signs mail no scanner saw while one is down: set it to tempfail (the default)');
    }
  },
  create(settings, _bank, _deps) {
    const scanners: Scanners = {
      rspamd: settings.rspamd.enabled
        ? createRspamdClient({ socket: settings.rspamd.socket || undefined, host: settings.rspamd.host, port: settings.rspamd.port, timeoutMs: settings.rspamd.timeoutMs })
        : undefined,
    };
    return {
      id: 'spam',
      async run(tx, signal) {
        const ran = [SPAM_RESULT.entry({ spammy: false })];
        if (coversAllRecipients(settings.bypass, tx)) return { findings: [{ code: 'SPAM_BYPASSED' }], results: ran };
        const c = await scanMessage(settings, scanners, tx, signal);
        const findings: Finding[] = c.failures.map((why) => ({ code: 'SPAM_SCANNER_FAILED', detail: why }));
        if (c.truncatedBodyBytes !== undefined)
          findings.push({
            code: 'SPAM_TRUNCATED',
            detail: `${tx.message.size} bytes; scanned the header and the first ${c.truncatedBodyBytes} of ${tx.message.bodySize} body bytes (maxScanBytes ${settings.maxScanBytes})`,
          });
        for (const why of c.skipped) findings.push({ code: 'SPAM_SCANNER_SKIPPED', detail: why });
        if (c.softReject) findings.push({ code: 'SPAM_SOFT_REJECT', detail: c.summary });
        if (!c.scanned) return { findings, results: ran };
        const detail = scoreDetail(c, c.summary);
        const code =
          c.level === 'kill'
            ? coversAllRecipients(settings.lovers, tx)
              ? 'SPAM_KILL_LOVED'
              : 'SPAM_KILL'
            : c.level === 'tag2'
              ? 'SPAM_SPAMMY'
              : c.level === 'tag'
                ? 'SPAM_TAGGED'
                : 'SPAM_CLEAN';
        findings.push({ code, detail });
        return { findings, results: [SPAM_RESULT.entry({ score: c.score, spammy: c.level === 'tag2' || c.level === 'kill' })] };
      },
    };
  },
});
