/**
 * A bank validated by the real schema (defaults filled), for unit tests of stages and the runner.
 */
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import type { Bank } from '../../src/config/bank-schema';
import { loadConfig } from '../../src/setup';

export function loadTestBank(overlay: Record<string, unknown>): Bank {
  const dir = mkdtempSync(path.join(tmpdir(), 'postseal-bank-'));
  mkdirSync(path.join(dir, 'banks'));
  writeFileSync(path.join(dir, 'banks', 'default.yaml'), YAML.stringify({ forward: { host: '127.0.0.1', port: 25 }, ...overlay }));
  writeFileSync(path.join(dir, 'postseal.yaml'), 'bankDir: banks\nlisteners: [{ port: 0, bank: default }]\n');
  return loadConfig(path.join(dir, 'postseal.yaml')).banks.get('default')!;
}
