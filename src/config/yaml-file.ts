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
    throw new PostsealError('CFG_YAML_INVALID', `${file}:${e.linePos?.[0].line ?? '?'}: ${e.message.split('\n')[0]}`, { cause: e });
  }
  return doc.toJS();
}

export function schemaError(file: string, errors: ErrorObject[] | null | undefined): PostsealError {
  const lines = (errors ?? []).map((e) => `${file}: ${e.instancePath || '/'}: ${describe(e)}`);
  return new PostsealError('CFG_SCHEMA_INVALID', lines.join('\n'));
}

function describe(e: ErrorObject): string {
  switch (e.keyword) {
    case 'additionalProperties':
      return `unknown key "${(e.params as { additionalProperty: string }).additionalProperty}"; remove it or check its spelling`;
    case 'enum':
      return `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'required':
      return `missing required key "${(e.params as { missingProperty: string }).missingProperty}"`;
    default:
      return e.message ?? e.keyword;
  }
}
