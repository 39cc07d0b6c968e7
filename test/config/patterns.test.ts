/**
 * config/patterns.ts: patterns pasted from amavisd.conf in Perl's syntax, which JavaScript
 * would compile into something that never matches, are refused with the pattern to write.
 */
import { compilePattern } from '../../src/config/patterns';
import { DEFAULT_RULES } from '../../src/stages/banned/schema';

describe('bank patterns', () => {
  it.each([
    ["qr'\\.(exe|com)$'i", "'\\.(exe|com)$'"],
    ['qr/^\\.exe-ms$/', "'^\\.exe-ms$'"],
    ['qr{\\.exe$}', "'\\.exe$'"],
    ['/\\.exe$/i', "'\\.exe$'"],
  ])('refuse the Perl quote %s, naming what is inside it', (pattern, inside) => {
    expect(() => compilePattern(pattern)).toThrow(`is a Perl quote (amavisd.conf): write only what is inside it, ${inside}`);
  });

  it.each(['/__MACOSX/', '/etc/passwd'])('accept %s, a JavaScript pattern for a path in an archive or a name, not a Perl quote', (pattern) => {
    expect(() => compilePattern(pattern)).not.toThrow();
  });

  it("refuse /.../ without flags when its anchors could only be Perl's", () => {
    expect(() => compilePattern('/\\.exe$/')).toThrow('is a Perl quote');
    expect(() => compilePattern('/^invoice/')).toThrow('is a Perl quote');
  });

  it('refuse \\z and \\A, which JavaScript reads as the letters z and A', () => {
    expect(() => compilePattern('\\.exe\\z')).toThrow(/\\z is Perl's; JavaScript reads it as the letter z: write \$/);
    expect(() => compilePattern('\\A\\.exe')).toThrow(/write \^/);
  });

  it('say that (?i) is not needed', () => {
    expect(() => compilePattern('(?i)\\.exe$')).toThrow(/JavaScript has no \(\?i\)/);
  });

  it('accept an escaped backslash before z, and every shipped default rule', () => {
    expect(compilePattern('a\\\\z').test('A\\Z')).toBe(true);
    for (const r of DEFAULT_RULES as readonly { deny?: string; allow?: string }[]) expect(() => compilePattern(r.deny ?? r.allow ?? '')).not.toThrow();
  });
});
