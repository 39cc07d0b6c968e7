/**
 * The X-Spam-* fields as amavisd writes them, and the finding detail they are made from.
 */
import { formatScore, parseScoreDetail, scoreDetail, spamFields, spamLevelBar } from '../../../src/stages/spam/headers';

describe('the X-Spam-* fields', () => {
  it('write the score with at most three decimals and no trailing zeros, as amavisd does', () => {
    expect([1000, 3.5, 6.31, -1.9, 2.0004, 0].map(formatScore)).toEqual(['1000', '3.5', '6.31', '-1.9', '2', '0']);
  });

  it('give one star per whole point, none below 1, at most 64', () => {
    expect([0.9, 1, 6.9, 1000, -5].map(spamLevelBar)).toEqual(['', '*', '******', '*'.repeat(64), '']);
  });

  it('fold X-Spam-Status at the commas of a long rule list, no line over 78 characters', () => {
    const tests = Array.from({ length: 40 }, (_, i) => `SOME_LONG_RULE_NAME_${i}=1.5`);
    const status = spamFields({ tagLevel: 2, tag2Level: 6.31 }, 60, tests, true).find((f) => f.name === 'X-Spam-Status')!;
    const lines = `X-Spam-Status: ${status.value}`.split('\r\n');
    expect(lines.length).toBeGreaterThan(10);
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(78);
    expect(lines.slice(1).every((l) => l.startsWith(' '))).toBe(true);
    expect(status.value.replace(/\r\n /g, ' ')).toBe(`Yes, score=60 tagged_above=2 required=6.31 tests=[${tests.join(', ')}]`);
  });

  it('are made from the detail of the finding, which reads back as written', () => {
    const detail = scoreDetail({ score: 7.25, tests: [{ name: 'A', score: 5 }, { name: 'B' }] }, 'spamd=7.25/5');
    expect(detail).toBe('score=7.25 tests=[A=5,B] spamd=7.25/5');
    expect(parseScoreDetail(detail)).toEqual({ score: 7.25, tests: ['A=5', 'B'] });
    expect(parseScoreDetail('something else')).toBeUndefined();
  });
});
