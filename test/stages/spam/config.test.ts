/**
 * The spam section's load-time checks (the spam stage's check, run when a bank loads): what a
 * bank may not combine, each refused with CFG_INCONSISTENT naming the key. No scanner is asked.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { isPostsealError } from '../../../src/errors';
import { settingsOf } from '../../../src/pipeline/runner';
import { spamStage } from '../../../src/stages/spam';
import { loadTestBank } from '../../helpers/banks';

const spamd = { enabled: true };

function refusal(overlay: Record<string, unknown>): Error {
  try {
    loadTestBank(overlay);
  } catch (err) {
    expect(isPostsealError(err, 'CFG_INCONSISTENT')).toBe(true);
    return err as Error;
  }
  throw new Error('the bank loaded');
}

/** The shipped ORIGINATING bank with the spam stages added before its signing. */
function originating(spam: Record<string, unknown>): Record<string, unknown> {
  const shipped = YAML.parse(readFileSync(path.join(__dirname, '../../../policy-banks/ORIGINATING.yaml'), 'utf8')) as { stages: string[] };
  const stages = shipped.stages.flatMap((s) => (s === 'seven-bit' ? ['spam', 'spam-tag', s] : [s]));
  // A notify target, as a bank with a bounce destiny needs one (config/load.ts).
  return { ...shipped, forward: { host: '127.0.0.1', port: 25 }, notify: { host: '127.0.0.1', port: 10027 }, stages, spam: { spamd, ...spam } };
}

describe('a bank with the spam stage', () => {
  it('loads with spamd enabled and the spam-tag stage', () => {
    const bank = loadTestBank({ stages: ['spam', 'spam-tag'], spam: { spamd } });
    expect(bank.spam).toMatchObject({ tagLevel: 2, tag2Level: 6.31, killLevel: 6.31, maxScanBytes: 204800, destiny: 'reject', onScannerFailure: 'tempfail', subjectTag: '' });
  });

  it('is refused on an originating (signing) bank when spam would be passed, naming the destiny', () => {
    expect(refusal(originating({ destiny: 'pass' })).message).toMatch(/\/spam\/destiny; this bank signs \(dkim-sign\)/);
  });

  it('is refused on an originating bank with spam lovers', () => {
    expect(refusal(originating({ lovers: ['boss@example.com'] })).message).toMatch(/\/spam\/lovers; /);
  });

  it('loads on the shipped originating bank with the default destiny, reject', () => {
    expect((loadTestBank(originating({})).spam as { destiny: string }).destiny).toBe('reject');
  });

  it('is refused on an originating bank that would drop spam silently (discard) or sign it unscanned (onScannerFailure pass)', () => {
    expect(refusal(originating({ destiny: 'discard' })).message).toMatch(/\/spam\/destiny; this bank signs \(dkim-sign\), and "discard" drops/);
    expect(refusal(originating({ onScannerFailure: 'pass' })).message).toMatch(/\/spam\/onScannerFailure; this bank signs/);
    expect(() => loadTestBank(originating({ destiny: 'bounce' }))).not.toThrow();
    expect(() => loadTestBank(originating({ destiny: 'quarantine' }))).not.toThrow();
  });

  it('bounces spam to our own user on a signing bank whatever the score (the sender is not forged there)', () => {
    const b = loadTestBank(originating({ destiny: 'bounce', dsnCutoffLevel: 10 }));
    const rule = spamStage.rules!.SPAM_KILL!;
    expect(rule(settingsOf(spamStage, b) as never, b, { code: 'SPAM_KILL', detail: 'score=1000 tests=[GTUBE=1000]' }, { authservId: 'x' })?.action).toBe('bounce');
  });

  it('is refused without the spam-tag stage, which removes the X-Spam-* fields a sender wrote', () => {
    expect(refusal({ stages: ['spam'], spam: { spamd } }).message).toMatch(/add spam-tag to its stages/);
  });

  it('is refused with no scanner enabled', () => {
    expect(refusal({ stages: ['spam', 'spam-tag'] }).message).toMatch(/\/spam\/spamd\/enabled; /);
  });

  it('is refused with a scanner timeout not below the stage timeout', () => {
    expect(refusal({ stages: ['spam', 'spam-tag'], spam: { rspamd: { enabled: true, timeoutMs: 60000 } } }).message).toMatch(/\/spam\/rspamd\/timeoutMs; 60000 is not below/);
  });

  it('is refused with levels that do not rise', () => {
    expect(refusal({ stages: ['spam', 'spam-tag'], spam: { spamd, tag2Level: 10, killLevel: 8 } }).message).toMatch(/the levels must rise/);
  });

  it('bounces spam below dsnCutoffLevel and discards it at or above (no backscatter to a forged sender)', () => {
    const b = loadTestBank({
      stages: ['spam', 'spam-tag'],
      notify: { host: '127.0.0.1', port: 10027 },
      spam: { spamd, destiny: 'bounce', tag2Level: 5, killLevel: 5, dsnCutoffLevel: 10 },
    });
    const rule = spamStage.rules!.SPAM_KILL!;
    const decide = (score: number) => rule(settingsOf(spamStage, b) as never, b, { code: 'SPAM_KILL', detail: `score=${score} tests=[X=${score}]` }, { authservId: 'x' });
    expect(decide(7)?.action).toBe('bounce');
    expect(decide(10)?.action).toBe('discard');
    expect(decide(1000)?.action).toBe('discard');
  });
});
