/**
 * Turns one ajv error into a line a postmaster can act on: what the schema wanted, what the
 * file has instead, and the fix for the mistakes people make when they bring amavisd-new,
 * OpenDKIM or postsrsd settings over: "10M" where bytes are wanted, `yes` for true (YAML 1.2
 * reads it as text), a Perl assignment pasted as a value, a list where a mapping is wanted, a
 * key spelt nearly right. Needs the errors of an ajv compiled with `verbose: true` (for
 * `data` and `parentSchema`); without them it says what the schema wanted, as before.
 */
import type { ErrorObject } from 'ajv';

const SIZE = /^\s*(\d+(?:\.\d+)?)\s*([kmgt])(?:i?b)?\s*$/i;
const DURATION = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)\s*$/i;
const SIZE_FACTOR: Record<string, number> = { k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };
const MS_FACTOR: Record<string, number> = { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000, d: 86_400_000 };
const YAML11_BOOLEANS = /^(yes|no|on|off|y|n|true|false)$/i;
/** `$sa_tag_level_deflt = 2.0;`, `@local_domains_maps = ...`: a line of amavisd.conf. */
const PERL_ASSIGNMENT = /^\s*[$@%][A-Za-z_]\w*\s*=|;\s*$/;

export function describeSchemaError(e: ErrorObject): string {
  switch (e.keyword) {
    case 'additionalProperties':
      return unknownKey(e);
    case 'enum':
      return `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}${given(e)}`;
    case 'required':
      return `missing required key "${(e.params as { missingProperty: string }).missingProperty}"`;
    case 'type':
      return wrongType(e);
    case 'pattern':
    case 'minimum':
    case 'maximum':
    case 'minLength':
      return `${e.message ?? e.keyword}${given(e)}`;
    default:
      return e.message ?? e.keyword;
  }
}

function unknownKey(e: ErrorObject): string {
  const key = (e.params as { additionalProperty: string }).additionalProperty;
  const known = Object.keys((e.parentSchema as { properties?: object } | undefined)?.properties ?? {});
  const near = nearest(key, known);
  return `unknown key "${key}"; ${near ? `did you mean "${near}"?` : 'remove it or check its spelling'}`;
}

/** The known key a typo most likely meant: same letters in another case, or at most two edits away. */
function nearest(key: string, known: readonly string[]): string | null {
  const lower = key.toLowerCase();
  const sameCase = known.find((k) => k.toLowerCase() === lower);
  if (sameCase) return sameCase;
  const most = Math.min(2, Math.floor(key.length / 3));
  let best: string | null = null;
  let bestDistance = most + 1;
  for (const k of known) {
    const d = distance(lower, k.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  return best;
}

/** Levenshtein distance (keys are short). */
function distance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length];
}

function wrongType(e: ErrorObject): string {
  const wanted = (e.params as { type: string | string[] }).type;
  const want = Array.isArray(wanted) ? wanted.join(' or ') : wanted;
  const data: unknown = e.data;
  if (want === 'object' && Array.isArray(data)) return 'must be a mapping of keys (key: value lines), not a list (lines starting with "- ")';
  const base = `must be ${want === 'object' ? 'a mapping of keys (key: value lines)' : want}${given(e)}`;
  if (typeof data !== 'string') return base;
  if (want === 'boolean' && YAML11_BOOLEANS.test(data.trim())) return `${base}; write true or false without quotes (postseal reads YAML 1.2, where yes, no, on and off are text)`;
  if (want === 'integer' || want === 'number') return `${base}${numberFix(e.instancePath, data)}`;
  return base;
}

function numberFix(pointer: string, text: string): string {
  if (PERL_ASSIGNMENT.test(text)) return '; this is amavisd.conf (Perl) syntax: write the value alone (tagLevel: 2.0); docs/config.md gives the amavisd name each key replaces';
  const size = SIZE.exec(text);
  if (size && /Bytes$/.test(pointer)) return `; write the number of bytes: ${Math.round(Number(size[1]) * SIZE_FACTOR[size[2].toLowerCase()])}`;
  const time = DURATION.exec(text);
  if (time && /Ms$/.test(pointer)) return `; write the number of milliseconds: ${Math.round(Number(time[1]) * MS_FACTOR[time[2].toLowerCase()])}`;
  if (/^\s*-?\d+(\.\d+)?\s*$/.test(text)) return `; write ${text.trim()} without quotes`;
  return '';
}

/** What the file has, when ajv kept it: a short form, so a whole bank does not fill the line. */
function given(e: ErrorObject): string {
  if (!('data' in e)) return '';
  const data: unknown = e.data;
  if (Array.isArray(data)) return ', not a list';
  if (data !== null && typeof data === 'object') return ', not a mapping';
  // A store URL written without its scheme still carries its password (host:6379 after :PASSWORD@): not printed.
  const text = (JSON.stringify(data) ?? String(data)).replace(/:[^:@/\s]+@/g, ':***@').replace(/(pass\w*=)[^&"]*/gi, '$1***');
  return `, not ${typeof data === 'string' ? 'the text ' : ''}${text.length > 60 ? `${text.slice(0, 57)}...` : text}`;
}
