import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { mailSrs } from '../helpers/srs-peers';
import { runCli } from '../helpers/cli';

const SECRET = 'cli-test-secret-123';

function configDir(srs: Record<string, unknown>, secretMode = 0o600): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'postseal-srs-cli-'));
  writeFileSync(path.join(dir, 'secrets'), `${SECRET}\n`);
  chmodSync(path.join(dir, 'secrets'), secretMode);
  writeFileSync(path.join(dir, 'postseal.yaml'), YAML.stringify({ bankDir: '', services: { srs: { domain: 'fwd.example', secretsFile: 'secrets', ...srs } } }));
  return path.join(dir, 'postseal.yaml');
}

describe('postseal srs', () => {
  it('forward prints the SRS address, which Mail::SRS reverses, and reverse prints the original', async () => {
    const config = configDir({});
    const fwd = runCli(['srs', 'forward', 'alice@orig.example', '--config', config]);
    expect([fwd.status, fwd.stderr]).toEqual([0, '']);
    const srs = fwd.stdout.trim();
    expect(srs).toMatch(/^SRS0=.{4}=..=orig\.example=alice@fwd\.example$/);
    expect(await mailSrs({ secrets: [SECRET] }, [`reverse ${srs}`])).toEqual(['OK alice@orig.example']);
    const rev = runCli(['srs', 'reverse', srs, '--config', config]);
    expect([rev.status, rev.stdout]).toEqual([0, 'alice@orig.example\n']);
  });

  it('exits 1 with the reason for a local sender and for a forged address', () => {
    const config = configDir({ localDomains: ['local.example'] });
    const local = runCli(['srs', 'forward', 'bob@local.example', '--config', config]);
    expect([local.status, local.stdout]).toEqual([1, '']);
    expect(local.stderr).toContain('local-domain');
    const forged = runCli(['srs', 'reverse', 'SRS0=abcd=AB=orig.example=mallory@fwd.example', '--config', config]);
    expect(forged.status).toBe(1);
    expect(forged.stderr).toContain('bad-hash');
  });

  it('exits 1 with CFG_SRS_SECRETS when the secrets file is readable by everyone', () => {
    const r = runCli(['srs', 'forward', 'alice@orig.example', '--config', configDir({}, 0o644)]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('CFG_SRS_SECRETS');
  });

  it('start refuses to run with a secrets file readable by everyone (exit 1, CFG_SRS_SECRETS)', () => {
    const config = configDir({ enabled: true, socketmapPort: 0, tcpForwardPort: 0, tcpReversePort: 0 }, 0o644);
    const yaml = YAML.parse(readFileSync(config, 'utf8'));
    writeFileSync(config, YAML.stringify({ ...yaml, listeners: [{ port: 0, bank: 'default' }] }));
    const r = runCli(['start', '--config', config, '--workers', '1']);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('CFG_SRS_SECRETS');
  });

  it('config check names the main file and /services/srs/secretsFile when the secrets file is missing', () => {
    const config = configDir({ enabled: true, secretsFile: 'postsrsd.secret' });
    const r = runCli(['config', 'check', '--config', config]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(
      `CFG_SRS_SECRETS\n${config}: /services/srs/secretsFile: SRS secrets file ${path.join(path.dirname(config), 'postsrsd.secret')} cannot be read (ENOENT); create it`,
    );
  });

  it('exits 2 on a direction it does not know', () => {
    expect(runCli(['srs', 'sideways', 'alice@orig.example']).status).toBe(2);
  });
});
