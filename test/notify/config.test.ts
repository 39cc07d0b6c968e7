/**
 * The notify and notices settings at load: notices on a bank without a notify target, and
 * recipient notices on an originating bank, refuse the configuration naming the file and the
 * key; a notify.from whose domain the signing table has no key for is a warning
 * (CFG_NOTIFY_UNSIGNED) on a site that signs, not with a key; a site template folder with a typo refuses it.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { isPostsealError } from '../../src/errors';
import { loadConfig } from '../../src/setup';
import { rsaKey, writeSigningFiles } from '../helpers/dkim-verifiers';

function configWith(main: Record<string, unknown>, banks: Record<string, Record<string, unknown>>): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'postseal-notify-config-'));
  mkdirSync(path.join(dir, 'banks'));
  for (const [name, bank] of Object.entries(banks)) writeFileSync(path.join(dir, 'banks', `${name}.yaml`), YAML.stringify(bank));
  writeFileSync(path.join(dir, 'postseal.yaml'), YAML.stringify({ bankDir: 'banks', listeners: Object.keys(banks).map((bank) => ({ port: 0, bank })), ...main }));
  return path.join(dir, 'postseal.yaml');
}

function loadError(file: string): Error & { code?: string } {
  try {
    loadConfig(file);
  } catch (err) {
    return err as Error;
  }
  throw new Error('the configuration loaded');
}

const forward = { host: '127.0.0.1', port: 10025 };
const notify = { host: '127.0.0.1', port: 10027 };

it('refuses admin notices on a bank without a notify target, naming the file and the fix', () => {
  const err = loadError(configWith({}, { default: { forward, notices: { virusAdmin: ['admin@example.org'] } } }));
  expect(isPostsealError(err, 'CFG_INCONSISTENT')).toBe(true);
  expect(err.message).toMatch(/default\.yaml: \/notices: notices go through the bank's notify target, and this bank has none; set notify/);
});

it('refuses recipient notices on an originating bank', () => {
  const err = loadError(configWith({}, { default: { forward, notify }, ORIGINATING: { originating: true, notices: { warnBannedRecipient: true } } }));
  expect(err.message).toMatch(/ORIGINATING\.yaml: \/notices\/warnBannedRecipient: an originating bank's recipients are on other sites/);
});

it('warns that DSNs and notices go unsigned when the signing table has no key for the notify.from domain, and not when it has one', () => {
  const dkimSign = writeSigningFiles([rsaKey], [{ author: 'example.com', keys: ['example-rsa'] }]);
  const notices = { virusAdmin: ['admin@example.com'] };
  const unsigned = loadConfig(configWith({ hostname: 'mx.example.net', dkimSign }, { default: { forward, notify, notices } }));
  expect(unsigned.notifyFrom).toBe('postmaster@mx.example.net');
  expect(unsigned.warnings).toContainEqual({ code: 'CFG_NOTIFY_UNSIGNED', message: expect.stringContaining('no key for mx.example.net') });
  const signed = loadConfig(configWith({ dkimSign, notify: { from: 'postmaster@example.com' } }, { default: { forward, notify, notices } }));
  expect(signed.warnings.filter((w) => w.code === 'CFG_NOTIFY_UNSIGNED')).toEqual([]);
});

it('does not warn about unsigned notices on a site that sends none (no notices set up, no bounce destiny)', () => {
  const dkimSign = writeSigningFiles([rsaKey], [{ author: 'example.com', keys: ['example-rsa'] }]);
  const quiet = loadConfig(configWith({ hostname: 'mx.example.net', dkimSign }, { default: { forward, notify } }));
  expect(quiet.warnings.filter((w) => w.code === 'CFG_NOTIFY_UNSIGNED')).toEqual([]);
  const bounces = loadConfig(configWith({ hostname: 'mx.example.net', dkimSign }, { default: { forward, notify, headerSanity: { destiny: 'bounce' } } }));
  expect(bounces.warnings).toContainEqual(expect.objectContaining({ code: 'CFG_NOTIFY_UNSIGNED' }));
});

it('refuses a site template with an unknown placeholder at load', () => {
  const file = configWith({ notify: { templateDir: 'templates' } }, { default: { forward, notify } });
  mkdirSync(path.join(path.dirname(file), 'templates'));
  writeFileSync(path.join(path.dirname(file), 'templates', 'admin.txt'), 'Subject: x\n\n$' + '{nope}\n');
  expect(isPostsealError(loadError(file), 'CFG_TEMPLATE_INVALID')).toBe(true);
});
