/**
 * The regular expressions of the banks (banned.rules, virus.fakeSenderNames) are JavaScript's,
 * case-insensitive. amavisd.conf writes them as Perl quotes, and a postmaster pastes them as
 * they are: qr'\.exe$'i, /\.exe$/i, \.(exe|com)\z, (?i)... JavaScript compiles most of those
 * into something else that never matches a file name ("qr'" is three literal characters, \z a
 * literal z, /.../ needs slashes in the name), so a pasted rule would stop banning without a
 * word. Such patterns are refused at load with the pattern to write instead.
 */

/** The pattern compiled as the stages compile it, or a SyntaxError that says what to write. */
export function compilePattern(pattern: string): RegExp {
  const perl = perlProblem(pattern);
  if (perl) throw new SyntaxError(perl);
  try {
    return new RegExp(pattern, 'i');
  } catch (err) {
    throw new SyntaxError(`${(err as Error).message}${inlineFlagsHint(pattern)}`);
  }
}

const QUOTED = /^(qr\s*)?([/'"{(<[|!#~])([\s\S]*)([/'"})>\]|!#~])([a-z]*)$/;
const CLOSING: Record<string, string> = { '{': '}', '(': ')', '<': '>', '[': ']' };
/** Perl escapes with no JavaScript meaning outside the u flag: JavaScript reads them as the letter. */
const PERL_ESCAPES: Record<string, string> = { A: '^', z: '$', Z: '$', Q: '', E: '', G: '' };

const PERL_FLAGS = /^[msixpodualn]*$/;

/**
 * Whether /inner/flags is Perl's match rather than a JavaScript pattern for a path in an archive
 * (/__MACOSX/, /etc/passwd): Perl flags after it (/i), or an anchor that the slashes around it
 * would make unmatchable in JavaScript (/^x/, /x$/).
 */
function slashQuoted(inner: string, flags: string): boolean {
  if (flags) return /^[imsx]+$/.test(flags);
  return inner.startsWith('^') || /(^|[^\\])(\\\\)*\$$/.test(inner);
}

function perlProblem(p: string): string | null {
  const q = QUOTED.exec(p);
  // Perl quotes: qr with any delimiter, or a bare /.../flags match; a pattern of one quote pair is not one.
  if (q && (q[1] ? PERL_FLAGS.test(q[5]) : q[2] === '/' && slashQuoted(q[3], q[5])) && p.length > 2 && (CLOSING[q[2]] ?? q[2]) === q[4]) {
    return `"${p}" is a Perl quote (amavisd.conf): write only what is inside it, '${q[3].replace(/'/g, "''")}' (YAML single quotes keep each backslash); patterns are JavaScript regular expressions, already case-insensitive`;
  }
  for (let i = 0; i < p.length - 1; i++) {
    if (p[i] !== '\\') continue;
    const next = p[i + 1];
    if (next in PERL_ESCAPES) {
      const instead = PERL_ESCAPES[next];
      return `"${p}": \\${next} is Perl's; JavaScript reads it as the letter ${next}: ${instead ? `write ${instead}` : 'remove it (escape each special character with \\ instead)'}`;
    }
    i++;
  }
  return null;
}

function inlineFlagsHint(p: string): string {
  if (/\(\?\^?[a-z]+\)/.test(p)) return '; JavaScript has no (?i) or (?x): remove it, patterns are already case-insensitive';
  if (p.includes('(?#')) return "; JavaScript has no (?#comment): remove it and put the text in the rule's comment";
  return '';
}
