/**
 * config/milter-failure.ts: a milter listener whose failureAction accept would let mail past a
 * bank's content checks when a stage times out is warned about (CFG_MILTER_ACCEPT_UNCHECKED),
 * also when the bank with the checks is one its macro rules choose; tempfail, or a bank
 * without content checks, is not.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { loadConfig } from '../../src/setup';

const INBOUND = ['loop-guard', 'header-sanity', 'dkim-verify', 'spf', 'dmarc', 'authentication-results'];

function warningsOf(failureAction: string, banks: Record<string, Record<string, unknown>>, bankRules: Record<string, unknown> = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'postseal-milter-failure-'));
  mkdirSync(path.join(dir, 'banks'));
  // A forward (not used by the milter, but every bank has one) on the default bank; the others lay over it.
  for (const [name, bank] of Object.entries(banks))
    writeFileSync(path.join(dir, 'banks', `${name}.yaml`), YAML.stringify(name === 'default' ? { forward: { host: '127.0.0.1', port: 10025 }, ...bank } : bank));
  const file = path.join(dir, 'postseal.yaml');
  writeFileSync(
    file,
    YAML.stringify({ bankDir: 'banks', listeners: [{ address: '127.0.0.1', port: 10030, bank: 'default', protocol: 'milter', milter: { failureAction } }], bankRules }),
  );
  return loadConfig(file).warnings.filter((w) => w.code === 'CFG_MILTER_ACCEPT_UNCHECKED');
}

it('warns about failureAction accept on a milter listener whose bank lists banned: a stage timeout would deliver a banned file', () => {
  const warnings = warningsOf('accept', { default: { stages: [...INBOUND, 'banned'] } });
  expect(warnings).toEqual([{ code: 'CFG_MILTER_ACCEPT_UNCHECKED', message: expect.stringContaining('/listeners/0/milter/failureAction: accept') }]);
  expect(warnings[0].message).toContain('bank default checks content');
});

it('warns when the bank with content checks is one a macro rule of the listener chooses', () => {
  const banks = { default: { stages: INBOUND }, SCANNED: { stages: [...INBOUND, 'spam', 'spam-tag'], spam: { spamd: { enabled: true } } } };
  const warnings = warningsOf('accept', banks, { macros: [{ macro: '{daemon_name}', values: ['SCANNED'], bank: 'SCANNED' }] });
  expect(warnings.map((w) => w.message)).toEqual([expect.stringContaining('bank SCANNED checks content')]);
});

it('does not warn for failureAction tempfail, nor for accept on a bank without content checks', () => {
  expect(warningsOf('tempfail', { default: { stages: [...INBOUND, 'banned'] } })).toEqual([]);
  expect(warningsOf('accept', { default: { stages: INBOUND } })).toEqual([]);
});
