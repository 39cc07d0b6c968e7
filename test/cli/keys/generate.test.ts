import { spawnSync } from 'node:child_process';
import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runCli } from '../../helpers/cli';

const dkimpy = path.join(__dirname, '../../fixtures/scripts/dkimpy-roundtrip.py');

/** The TXT record text back out of the zone-file form. */
function recordText(zone: string): string {
  return [...zone.matchAll(/"([^"]*)"/g)].map((m) => m[1]).join('');
}

describe('postseal keys generate', () => {
  it.each([
    ['rsa', ['--bits', '2048'], 'rsa-sha256'],
    ['ed25519', [], 'ed25519-sha256'],
  ])('makes a %s key whose printed record verifies a dkimpy signature', (type, extra, algo) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'keys-'));
    const r = runCli(['keys', 'generate', '--domain', 'example.org', '--selector', 'sel1', '--type', type, ...extra, '--out', dir]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^sel1\._domainkey\.example\.org\. 3600 IN TXT \( "v=DKIM1; k=/);
    for (const s of r.stdout.matchAll(/"([^"]*)"/g)) expect(s[1].length).toBeLessThanOrEqual(255);
    const file = path.join(dir, 'example.org.sel1.pem');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const v = spawnSync('/usr/bin/python3', [dkimpy, file, 'example.org', 'sel1', recordText(r.stdout), algo], { encoding: 'utf8' });
    expect(v.stdout.trim()).toBe('pass');
  });

  it('adds t=y with --testing', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'keys-'));
    const r = runCli(['keys', 'generate', '--domain', 'example.org', '--selector', 't', '--type', 'ed25519', '--testing', '--out', dir]);
    expect(recordText(r.stdout)).toMatch(/^v=DKIM1; k=ed25519; t=y; p=/);
  });

  it('keeps an existing key file unless --force is given', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'keys-'));
    writeFileSync(path.join(dir, 'example.org.s.pem'), 'old');
    const r = runCli(['keys', 'generate', '--domain', 'example.org', '--selector', 's', '--type', 'ed25519', '--out', dir]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('--force');
    expect(runCli(['keys', 'generate', '--domain', 'example.org', '--selector', 's', '--type', 'ed25519', '--out', dir, '--force']).status).toBe(0);
  });

  it('refuses RSA keys under 1024 bits as a usage error', () => {
    expect(runCli(['keys', 'generate', '--domain', 'example.org', '--selector', 's', '--bits', '512']).status).toBe(2);
  });
});

describe('postseal keys', () => {
  it('lists its subcommands with --help; no subcommand or an unknown one is a usage error', () => {
    const help = runCli(['keys', '--help']);
    expect(help.status).toBe(0);
    for (const sub of ['generate', 'show', 'test', 'activate', 'import']) expect(help.stdout).toContain(`keys ${sub} `);
    expect(runCli(['keys']).status).toBe(2);
    expect(runCli(['keys', 'rotate']).status).toBe(2);
    expect(runCli(['keys', 'constructor']).status).toBe(2);
  });
});
