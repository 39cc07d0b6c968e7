/**
 * For the configuration tests: a folder with a main file and bank files, and the error that
 * loading it gives (config/load.ts, schema-errors.ts).
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { isPostsealError, type PostsealError } from '../../src/errors';
import { loadConfig } from '../../src/setup';

/** `main` appended to a valid main file (one listener on the default bank), `bank` to default.yaml, `others` more bank files. */
export function configFolder(main: string, bank = '', others: Record<string, string> = {}): { dir: string; file: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'postseal-config-'));
  mkdirSync(path.join(dir, 'banks'));
  writeFileSync(path.join(dir, 'banks', 'default.yaml'), `forward: { host: 127.0.0.1, port: 10025 }\n${bank}`);
  for (const [name, text] of Object.entries(others)) writeFileSync(path.join(dir, 'banks', `${name}.yaml`), text);
  const file = path.join(dir, 'postseal.yaml');
  writeFileSync(file, `bankDir: banks\nlisteners:\n  - { port: 0, bank: default }\n${main}`);
  return { dir, file };
}

/** The PostsealError that loading `file` throws; fails the test when it loads. */
export function loadError(file: string): PostsealError {
  try {
    loadConfig(file);
  } catch (err) {
    if (isPostsealError(err)) return err;
    throw err;
  }
  throw new Error('the configuration was accepted');
}
