/**
 * SPF macros (RFC 7208 §7): the syntax check of a macro-string, domain-spec and
 * explain-string (§7.1, §12), and their expansion (§7.2–§7.4) with transformers (digits,
 * "r"), delimiters and URL escaping of upper-case letters.
 *
 * Parsing happens with the record (record.ts), so a bad macro anywhere is a permerror before
 * anything is evaluated. c, r and t are legal only in explanation text (§7.3): a domain-spec
 * or exp= that uses them is a syntax error. Expansion is async only because %{p} needs DNS;
 * its value comes from a callback the evaluator caches.
 */

export type MacroToken =
  | { readonly kind: 'literal'; readonly text: string }
  /** %%, %_ and %-: a macro-expand in the grammar (a domain-spec may end with one). */
  | { readonly kind: 'escape'; readonly text: string }
  | {
      readonly kind: 'macro';
      /** Lower case; `upper` says whether the value is URL-escaped. */
      readonly letter: string;
      readonly upper: boolean;
      readonly keep?: number;
      readonly reverse: boolean;
      readonly delimiters: string;
    };

export class MacroSyntaxError extends Error {}

const LETTERS = 'slodiphcrtv';
const EXPLANATION_ONLY = 'crt';
const DELIMITERS = '.-+,/_=';
/** More right-hand parts than any name can have (127 labels); bigger numbers keep everything. */
const MAX_KEEP = 128;

export interface MacroSyntax {
  /** explain-string: SP is a literal too (§7.1). */
  readonly spaces: boolean;
  /** c, r, t allowed: in explanation text (§7.3), and in unknown modifiers, which are never expanded. */
  readonly explanationLetters: boolean;
}

/** macro-string (§7.1), or explain-string with `spaces`. */
export function parseMacroString(text: string, syntax: MacroSyntax): MacroToken[] {
  const tokens: MacroToken[] = [];
  let literal = '';
  const flush = () => {
    if (literal) tokens.push({ kind: 'literal', text: literal });
    literal = '';
  };
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch !== '%') {
      const code = ch.charCodeAt(0);
      const visible = code >= 0x21 && code <= 0x7e;
      if (!visible && !(syntax.spaces && ch === ' ')) throw new MacroSyntaxError(`character 0x${code.toString(16)} not allowed in "${text}"`);
      literal += ch;
      continue;
    }
    const next = text[i + 1];
    if (next === '%' || next === '_' || next === '-') {
      flush();
      tokens.push({ kind: 'escape', text: next === '%' ? '%' : next === '_' ? ' ' : '%20' });
      i++;
      continue;
    }
    if (next !== '{') throw new MacroSyntaxError(`"%" not followed by "{", "%", "_" or "-" in "${text}"`);
    const end = text.indexOf('}', i + 2);
    if (end < 0) throw new MacroSyntaxError(`unterminated macro in "${text}"`);
    flush();
    tokens.push(parseMacro(text.slice(i + 2, end), syntax));
    i = end;
  }
  flush();
  return tokens;
}

function parseMacro(body: string, syntax: MacroSyntax): MacroToken {
  const m = /^([a-zA-Z])(\d*)([rR]?)(.*)$/.exec(body);
  const letter = m?.[1].toLowerCase() ?? '';
  if (!m || !LETTERS.includes(letter)) throw new MacroSyntaxError(`unknown macro letter in %{${body}}`);
  if (!syntax.explanationLetters && EXPLANATION_ONLY.includes(letter)) throw new MacroSyntaxError(`%{${m[1]}} is allowed only in explanation text`);
  if ([...m[4]].some((c) => !DELIMITERS.includes(c))) throw new MacroSyntaxError(`bad delimiter in %{${body}}`);
  const keep = m[2] ? Math.min(Number(m[2]), MAX_KEEP) : undefined;
  if (keep === 0) throw new MacroSyntaxError(`%{${body}}: the number of parts must not be zero`);
  return { kind: 'macro', letter, upper: m[1] !== letter, keep, reverse: m[3] !== '', delimiters: m[4] || '.' };
}

const TOPLABEL = /^(?:[a-z0-9]*[a-z][a-z0-9]*|[a-z0-9]+-[a-z0-9-]*[a-z0-9])$/i;

/**
 * domain-spec = macro-string domain-end; domain-end = ( "." toplabel [ "." ] ) / macro-expand.
 * The check is on the text as written, never after expansion (the suite's invalid-hello-macro).
 */
export function parseDomainSpec(text: string): MacroToken[] {
  if (!text) throw new MacroSyntaxError('empty domain-spec');
  const tokens = parseMacroString(text, { spaces: false, explanationLetters: false });
  const last = tokens[tokens.length - 1];
  if (last.kind !== 'literal') return tokens;
  const end = last.text.endsWith('.') ? last.text.slice(0, -1) : last.text;
  const dot = end.lastIndexOf('.');
  if (dot < 0 || !TOPLABEL.test(end.slice(dot + 1))) throw new MacroSyntaxError(`"${text}" does not end in a valid top label`);
  return tokens;
}

/** The values the letters stand for; p is asked for only when used. */
export interface MacroValues {
  readonly s: string;
  readonly l: string;
  readonly o: string;
  readonly d: string;
  readonly i: string;
  readonly h: string;
  readonly c: string;
  readonly r: string;
  readonly t: string;
  readonly v: string;
  p(): Promise<string>;
}

/**
 * How much of an expansion matters, so a record of thousands of macros and a long sender
 * cannot build megabytes: a domain name keeps its end (toQueryName cuts on the left, and 255
 * characters decide where), an explanation its start.
 */
export type ExpansionBound = { readonly keep: 'tail' | 'head'; readonly chars: number };
export const DOMAIN_BOUND: ExpansionBound = { keep: 'tail', chars: 512 };
export const EXPLANATION_BOUND: ExpansionBound = { keep: 'head', chars: 1024 };

export async function expand(tokens: readonly MacroToken[], values: MacroValues, bound: ExpansionBound = DOMAIN_BOUND): Promise<string> {
  let out = '';
  for (const t of tokens) {
    if (t.kind !== 'macro') {
      out += t.text;
    } else {
      const raw = t.letter === 'p' ? await values.p() : values[t.letter as Exclude<keyof MacroValues, 'p'>];
      const value = transform(raw, t.delimiters, t.reverse, t.keep);
      out += t.upper ? urlEscape(value) : value;
    }
    if (out.length > 2 * bound.chars) {
      if (bound.keep === 'head') return out.slice(0, bound.chars);
      out = out.slice(-bound.chars);
    }
  }
  return bound.keep === 'head' ? out.slice(0, bound.chars) : out;
}

/** §7.3: split on the delimiters, optionally reverse, keep the right-most parts, join with ".". */
function transform(value: string, delimiters: string, reverse: boolean, keep: number | undefined): string {
  let parts = value.split(new RegExp(`[${delimiters.replace(/[-\\\]^]/g, '\\$&')}]`));
  if (reverse) parts.reverse();
  if (keep !== undefined && keep < parts.length) parts = parts.slice(parts.length - keep);
  return parts.join('.');
}

/** §7.3: upper-case macros escape everything outside RFC 3986's unreserved set. */
function urlEscape(value: string): string {
  let out = '';
  for (const byte of Buffer.from(value, 'utf8')) {
    const ch = String.fromCharCode(byte);
    out += /[A-Za-z0-9\-._~]/.test(ch) ? ch : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** §7.3 last paragraph: a name longer than 253 loses labels on the left until it fits; a trailing dot goes. */
export function toQueryName(expanded: string): string {
  let name = expanded.endsWith('.') ? expanded.slice(0, -1) : expanded;
  while (name.length > 253) {
    const dot = name.indexOf('.');
    if (dot < 0) return name;
    name = name.slice(dot + 1);
  }
  return name;
}
