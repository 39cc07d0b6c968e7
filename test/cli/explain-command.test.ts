import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { runCli } from '../helpers/cli';
import { edKey, rsaKey } from '../helpers/dkim-verifiers';
import { writeKeyConfig, type KeyConfig } from '../helpers/key-config';

let cfg: KeyConfig;

beforeAll(() => {
  cfg = writeKeyConfig({
    keys: {
      'example-rsa': { domain: 'example.com', selector: 'rsa2048', keyFile: rsaKey.file, algorithm: 'rsa-sha256' },
      'example-ed': { domain: 'example.com', selector: 'ed1', keyFile: edKey.file, algorithm: 'ed25519-sha256', state: 'staged' },
      'new-domain': { domain: 'new.example', selector: 'sel1', keyFile: edKey.file, algorithm: 'ed25519-sha256', state: 'staged' },
    },
    rules: [
      { author: 'example.com', keys: ['example-rsa', 'example-ed'] },
      { author: '*.example.com', keys: ['example-rsa'] },
      { author: 'new.example', keys: ['new-domain'] },
    ],
  });
  writeFileSync(path.join(cfg.dir, 'banks', 'INBOUND.yaml'), 'originating: false\nstages: [loop-guard]\n');
  writeFileSync(path.join(cfg.dir, 'banks', 'STRICT.yaml'), 'dkimSign: { unsignableFrom: reject, envelopeSenderFallback: true }\n');
});

function explain(message: string, ...args: string[]) {
  const file = path.join(cfg.dir, `msg-${Math.random().toString(36).slice(2)}.eml`);
  writeFileSync(file, message);
  return runCli(['explain', '--config', cfg.config, '--bank', 'default', ...args, file]);
}

describe('postseal explain', () => {
  it('names the exact rule and each key with its state, and exits 0 when the message would be signed', () => {
    const r = explain('From: Joe <joe@example.com>\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nbody\r\n');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('author: joe@example.com (From)');
    expect(r.stdout).toContain(`rule: ${cfg.signingTableFile} /0: example.com\n`);
    expect(r.stdout).toContain('key example-rsa: d=example.com s=rsa2048 rsa-sha256, active: signs');
    expect(r.stdout).toContain('key example-ed: d=example.com s=ed1 ed25519-sha256, staged: does not sign');
    expect(r.stdout).toMatch(/options: c=relaxed\/relaxed t=now i=none l=no h=from:from:[a-z:-]*subject:subject:/);
    expect(r.stdout).toMatch(/result: signed: d=example\.com s=rsa2048 rsa-sha256\n$/);
  });

  it('says when the nearest parent rule applies', () => {
    const r = explain('From: a@lists.example.com\r\n\r\nbody\r\n');
    expect([r.status, r.stdout]).toEqual([0, expect.stringContaining('/1: *.example.com (no rule for lists.example.com itself; the nearest parent rule)')]);
  });

  it.each([
    ['no_key_for_domain', 'From: a@elsewhere.example\r\n\r\nbody\r\n', 'default', 'DKIM_SIGN_NO_KEY no_key_for_domain elsewhere.example); passed on unsigned'],
    ['no_active_key', 'From: a@new.example\r\n\r\nbody\r\n', 'default', 'DKIM_SIGN_NO_KEY no_active_key new.example (s=sel1 staged)); passed on unsigned'],
    ['multiple_from', 'From: a@example.com\r\nFrom: b@example.com\r\n\r\nbody\r\n', 'STRICT', 'DKIM_SIGN_MULTIPLE_FROM 2 From fields); reject: 550 5.6.0'],
    ['no_from', 'Subject: x\r\n\r\nbody\r\n', 'default', '(DKIM_SIGN_NO_FROM); passed on unsigned'],
    ['no_author_domain', 'From: undisclosed-recipients:;\r\n\r\nbody\r\n', 'default', 'DKIM_SIGN_NO_AUTHOR_DOMAIN'],
    ['not_originating', 'From: a@example.com\r\n\r\nbody\r\n', 'INBOUND', 'only mail of our own users is signed'],
  ])('explains %s and exits 1', (reason, message, bank, detail) => {
    const r = explain(message, '--bank', bank);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`^result: not signed: ${reason}: `, 'm'));
    expect(r.stdout).toContain(detail);
  });

  it('uses the envelope sender when the bank falls back to it', () => {
    const r = explain('From: undisclosed-recipients:;\r\n\r\nbody\r\n', '--bank', 'STRICT', '--mail-from', 'news@example.com');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('author: news@example.com (envelope sender: dkimSign.envelopeSenderFallback)');
  });

  it('refuses an unknown bank as a usage error', () => {
    expect(explain('From: a@example.com\r\n\r\nb\r\n', '--bank', 'NOPE').status).toBe(2);
  });
});
