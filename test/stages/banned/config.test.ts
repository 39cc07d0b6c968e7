/**
 * The banned section at load: a bank that signs (the shipped ORIGINATING bank) may not pass
 * banned mail, patterns must compile, a rule is either allow or deny, and the destiny is one
 * of amavisd's.
 */
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { isPostsealError } from '../../../src/errors';
import { settingsOf } from '../../../src/pipeline/runner';
import { bannedStage } from '../../../src/stages/banned';
import { loadConfig } from '../../../src/setup';

const shippedOriginating = YAML.parse(readFileSync(path.join(__dirname, '../../../policy-banks/ORIGINATING.yaml'), 'utf8'));

/** Loads a configuration whose ORIGINATING bank is the shipped one with the banned stage and `banned` added. */
function loadOriginating(banned: Record<string, unknown>, defaultBanned: Record<string, unknown> = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'postseal-banned-config-'));
  mkdirSync(path.join(dir, 'banks'));
  writeFileSync(
    path.join(dir, 'banks', 'default.yaml'),
    YAML.stringify({ forward: { host: '127.0.0.1', port: 10025 }, notify: { host: '127.0.0.1', port: 10027 }, banned: defaultBanned }),
  );
  const originating = { ...shippedOriginating, stages: [...shippedOriginating.stages, 'banned'], banned };
  writeFileSync(path.join(dir, 'banks', 'ORIGINATING.yaml'), YAML.stringify(originating));
  writeFileSync(path.join(dir, 'postseal.yaml'), 'bankDir: banks\nlisteners: [{ port: 0, bank: default }, { port: 0, bank: ORIGINATING }]\n');
  return () => loadConfig(path.join(dir, 'postseal.yaml'));
}

function errorOf(load: () => unknown): { code: string; message: string } {
  try {
    load();
  } catch (err) {
    if (isPostsealError(err)) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error('loaded');
}

describe('banned settings at load', () => {
  it('accepts the shipped ORIGINATING bank with the banned stage and its defaults (reject)', () => {
    const cfg = loadOriginating({})();
    expect(settingsOf(bannedStage, cfg.banks.get('ORIGINATING')!).destiny).toBe('reject');
  });

  it('refuses destiny pass in a bank that signs, naming the file and the pointer', () => {
    const e = errorOf(loadOriginating({ destiny: 'pass' }));
    expect(e.code).toBe('CFG_INCONSISTENT');
    expect(e.message).toMatch(/ORIGINATING\.yaml: \/banned\/destiny: pass in a bank that signs/);
  });

  it('refuses banned-files lovers in a bank that signs', () => {
    const e = errorOf(loadOriginating({ lovers: ['ceo@example.org'] }));
    expect(e.code).toBe('CFG_INCONSISTENT');
    expect(e.message).toMatch(/\/banned\/lovers: not empty/);
  });

  it('refuses a pass the signing bank inherits from the default bank (banks are overlays)', () => {
    expect(errorOf(loadOriginating({}, { destiny: 'pass' })).message).toMatch(/ORIGINATING\.yaml: \/banned\/destiny: pass/);
  });

  it('accepts destiny pass and lovers in a bank that does not sign, the signing bank overriding them', () => {
    const cfg = loadOriginating({ destiny: 'reject', lovers: [] }, { destiny: 'pass', lovers: ['example.org'] })();
    expect(settingsOf(bannedStage, cfg.banks.get('default')!).destiny).toBe('pass');
  });

  it('refuses a pattern that does not compile, naming the rule', () => {
    const e = errorOf(loadOriginating({ rules: [{ deny: '\\.(exe' }] }));
    expect(e.code).toBe('CFG_SCHEMA_INVALID');
    expect(e.message).toMatch(/\/banned\/rules\/0\/deny: rule 1: /);
  });

  it('refuses an amavisd qr quote pasted as a pattern, which would never match a file name, naming the rule and what to write', () => {
    const e = errorOf(loadOriginating({ rules: [{ allow: '^\\.pdf$' }, { deny: "qr'.\\.(exe|scr)$'i", on: 'name' }] }));
    expect(e.code).toBe('CFG_SCHEMA_INVALID');
    expect(e.message).toMatch(
      /ORIGINATING\.yaml: \/banned\/rules\/1\/deny: rule 2: "qr'.*'i" is a Perl quote \(amavisd\.conf\): write only what is inside it, '\.\\\.\(exe\|scr\)\$'/,
    );
  });

  it('refuses a rule that is both allow and deny, or neither', () => {
    expect(errorOf(loadOriginating({ rules: [{ deny: 'a', allow: 'b' }] })).code).toBe('CFG_SCHEMA_INVALID');
    expect(errorOf(loadOriginating({ rules: [{ on: 'name' }] })).code).toBe('CFG_SCHEMA_INVALID');
  });

  it('accepts the bounce and quarantine destinies in a signing bank, and refuses one amavisd does not have', () => {
    expect(settingsOf(bannedStage, loadOriginating({ destiny: 'bounce' })().banks.get('ORIGINATING')!).destiny).toBe('bounce');
    expect(settingsOf(bannedStage, loadOriginating({ destiny: 'quarantine' })().banks.get('ORIGINATING')!).destiny).toBe('quarantine');
    expect(errorOf(loadOriginating({ destiny: 'defer' })).code).toBe('CFG_SCHEMA_INVALID');
  });
});
