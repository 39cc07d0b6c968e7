/**
 * Reading one YAML configuration file and explaining schema violations: CFG_FILE_UNREADABLE,
 * CFG_YAML_INVALID (with the line), CFG_SCHEMA_INVALID (with the JSON pointer and what was
 * expected). Shared by the main config, the policy banks and the signing key files.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { ErrorObject } from 'ajv';
import YAML from 'yaml';
import { PostsealError } from '../errors';
import { describeSchemaError } from './schema-errors';

export function readYaml(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && path.basename(file) === 'default.yaml') return null;
    throw new PostsealError('CFG_FILE_UNREADABLE', `${file}: cannot read: ${(err as Error).message}`, { cause: err });
  }
  const doc = YAML.parseDocument(text, { prettyErrors: true });
  if (doc.errors.length) {
    const e = doc.errors[0];
    const at = e.linePos?.[0];
    // yaml's first line ends "at line L, column C:" before its excerpt; we give file:L:C instead.
    const what = e.message.split('\n')[0].replace(/ at line \d+, column \d+:$/, '');
    const line = at ? (text.split('\n')[at.line - 1] ?? '') : '';
    throw new PostsealError('CFG_YAML_INVALID', `${file}:${at ? `${at.line}:${at.col}` : '?'}: ${what}${yamlFix(e.code, line)}`, { cause: e });
  }
  return doc.toJS();
}

/** The usual causes of a YAML error in a hand-edited file, and the fix. */
function yamlFix(code: string, line: string): string {
  if (/^\s*[$@%][A-Za-z_]\w*\s*=/.test(line))
    return `; "${line.trim()}" is amavisd.conf (Perl) syntax: postseal's settings are YAML keys (spam: { tagLevel: 2.0 }); docs/config.md names the amavisd setting each key replaces`;
  if (code === 'TAB_AS_INDENT') return '; indent with spaces, never tabs (expand -t 2 turns them into spaces)';
  if (code === 'DUPLICATE_KEY') return '; a key is given twice in one mapping: keep one';
  if (code === 'BAD_INDENT' || code === 'BLOCK_AS_IMPLICIT_KEY' || code === 'MISSING_CHAR')
    return '; check the indentation of this line and the next: the keys of one mapping start in the same column, with a space after each colon';
  return '';
}

export function schemaError(file: string, errors: ErrorObject[] | null | undefined): PostsealError {
  const lines = (errors ?? []).map((e) => `${file}: ${e.instancePath || '/'}: ${describeSchemaError(e)}`);
  return new PostsealError('CFG_SCHEMA_INVALID', lines.join('\n'));
}

/**
 * A bank file (an overlay merged key by key over default.yaml) that holds a list or a bare
 * value instead of a mapping: refused as a whole, not merged as keys "0", "1"...
 */
export function mappingOrNull(file: string, value: unknown): Record<string, unknown> | null {
  if (value === null || (typeof value === 'object' && !Array.isArray(value))) return value as Record<string, unknown> | null;
  const what = Array.isArray(value) ? 'a list (lines starting with "- ")' : `the text ${JSON.stringify(String(value)).slice(0, 60)}`;
  throw new PostsealError('CFG_SCHEMA_INVALID', `${file}: /: must be a mapping of keys (key: value lines), not ${what}; write the keys at the start of their lines, without "- "`);
}
