/**
 * The X-Spam-* header fields, written as amavisd-new writes them (Amavis.pm,
 * add_forwarding_header_edits_per_recip): X-Spam-Flag YES at tag2 (NO below), X-Spam-Score
 * with at most three decimals, X-Spam-Level as one star per point (at most 64), and
 * X-Spam-Status "Yes|No, score= tagged_above= required= tests=[RULE=points, ...]", folded at
 * the commas (RFC 5322 2.2.3) so a long list of rules never makes a line over 78 characters.
 *
 * A rule (verdict.ts) sees only its finding, so the spam stage puts the score and the rules in
 * the finding's detail in one fixed form, `score=<n> tests=[<RULE=n>,...]` and then the
 * scanners' own words; fieldsFromDetail reads that form back. Rule names were checked against
 * SYMBOL_NAME by the clients, so none holds a space, comma or bracket.
 */
import type { SpamSymbol } from '../../lib/spamd/client';

export interface SpamScore {
  readonly score: number;
  readonly tests: readonly SpamSymbol[];
}

/** Perl's 0+sprintf("%.3f"): three decimals at most, no trailing zeros. */
export function formatScore(n: number): string {
  return String(Number(n.toFixed(3)));
}

function formatTest(t: SpamSymbol): string {
  return t.score === undefined ? t.name : `${t.name}=${formatScore(t.score)}`;
}

/** The detail of a scored finding; `extra` (the scanners' own scores and actions) follows. */
export function scoreDetail(s: SpamScore, extra: string): string {
  return `score=${formatScore(s.score)} tests=[${s.tests.map(formatTest).join(',')}] ${extra}`.trimEnd();
}

const DETAIL = /^score=(-?\d+(?:\.\d+)?) tests=\[([^\]]*)\]/;

/** Reads scoreDetail's form back; undefined if the detail is not in it. */
export function parseScoreDetail(detail: string | undefined): { score: number; tests: string[] } | undefined {
  const m = DETAIL.exec(detail ?? '');
  if (!m) return undefined;
  return { score: Number(m[1]), tests: m[2] === '' ? [] : m[2].split(',') };
}

/** One star per whole point, at most 64 (amavisd $sa_spam_level_char); empty below 1. */
export function spamLevelBar(score: number): string {
  return score < 1 ? '' : '*'.repeat(Math.min(64, Math.floor(score)));
}

/** Joins the words with spaces, folding (CRLF + space) before a word that would pass 78 columns. */
function fold(nameLength: number, words: readonly string[]): string {
  let out = '';
  let column = nameLength + 2;
  for (const [i, w] of words.entries()) {
    if (i > 0 && column + 1 + w.length > 78) {
      out += `\r\n ${w}`;
      column = 1 + w.length;
    } else {
      out += i > 0 ? ` ${w}` : w;
      column += (i > 0 ? 1 : 0) + w.length;
    }
  }
  return out;
}

export interface Levels {
  readonly tagLevel: number;
  readonly tag2Level: number;
}

/** The four fields, in amavisd's order; `spammy`: at or above tag2 (X-Spam-Flag: YES). */
export function spamFields(levels: Levels, score: number, tests: readonly string[], spammy: boolean): { name: string; value: string }[] {
  const testWords = tests.length === 0 ? ['tests=[]'] : tests.map((t, i) => `${i === 0 ? 'tests=[' : ''}${t}${i === tests.length - 1 ? ']' : ','}`);
  const status = fold('X-Spam-Status'.length, [
    `${spammy ? 'Yes' : 'No'},`,
    `score=${formatScore(score)}`,
    `tagged_above=${formatScore(levels.tagLevel)}`,
    `required=${formatScore(levels.tag2Level)}`,
    ...testWords,
  ]);
  return [
    { name: 'X-Spam-Flag', value: spammy ? 'YES' : 'NO' },
    { name: 'X-Spam-Score', value: formatScore(score) },
    { name: 'X-Spam-Level', value: spamLevelBar(score) },
    { name: 'X-Spam-Status', value: status },
  ];
}
