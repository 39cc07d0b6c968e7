import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runCli } from '../helpers/cli';
import { freePort } from '../helpers/redis-server';

function configDir(bank: string, bankText: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'postseal-cfg-'));
  mkdirSync(path.join(dir, 'banks'));
  writeFileSync(path.join(dir, 'banks', `${bank}.yaml`), bankText);
  writeFileSync(path.join(dir, 'postseal.yaml'), 'bankDir: banks\nlisteners:\n  - { port: 0, bank: default }\n');
  return dir;
}

describe('postseal config', () => {
  it('check accepts the embedded default configuration', () => {
    const r = runCli(['config', 'check']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/valid \(3 listeners, banks: default, ORIGINATING, NOCHECKS\)/);
  });

  it('check accepts examples/postseal.full.yaml, the configuration with every side service on, as it is', () => {
    const copy = mkdtempSync(path.join(tmpdir(), 'postseal-full-'));
    // A copy, so that checking it creates no state file in the repository.
    const file = path.join(copy, 'postseal.full.yaml');
    writeFileSync(file, readFileSync(path.resolve(__dirname, '../../examples/postseal.full.yaml')));
    // The SRS secrets file the example's comment tells the reader to make.
    writeFileSync(path.join(copy, 'srs-secrets'), 'example-srs-secret-1\n', { mode: 0o600 });
    const r = runCli(['config', 'check', '--config', file]);
    expect([r.status, r.stderr]).toEqual([0, '']);
    expect(r.stdout).toMatch(/valid \(5 listeners, banks: default, ORIGINATING, NOCHECKS\)/);
    expect(readFileSync(file, 'utf8')).toMatch(/^ {2}metrics: \{ enabled: true, address: 127\.0\.0\.1, port: 9205 \}$/m);
    expect(readFileSync(file, 'utf8')).toMatch(/^ {2}policy:\n {4}enabled: true\n {4}address: 127\.0\.0\.1\n {4}port: 10040 /m);
  });

  it('an invalid bank stops with exit 1, naming the file, the JSON pointer and what was expected', () => {
    const dir = configDir('default', 'forward: { host: 127.0.0.1, port: 10025 }\nheaderSanity:\n  nul: maybe\n');
    const r = runCli(['config', 'check', '--config', path.join(dir, 'postseal.yaml')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('CFG_SCHEMA_INVALID');
    expect(r.stderr).toContain(`${path.join(dir, 'banks', 'default.yaml')}: /headerSanity/nul: must be one of "pass", "fix", "reject"`);
  });

  it('start refuses an invalid bank with exit 1 before listening', () => {
    const dir = configDir('default', 'forward: { host: 127.0.0.1, port: 10025 }\nfrwd: 1\n');
    const r = runCli(['start', '--config', path.join(dir, 'postseal.yaml')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('/: unknown key "frwd"');
    expect(r.stdout).toBe('');
  });

  it('a bank that forwards to a postseal listener is refused as a loop', () => {
    const dir = configDir('default', 'forward: { host: 127.0.0.1, port: 10024 }\n');
    writeFileSync(path.join(dir, 'postseal.yaml'), 'bankDir: banks\nlisteners:\n  - { port: 10024, bank: default }\n');
    const r = runCli(['config', 'check', '--config', path.join(dir, 'postseal.yaml')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('CFG_INCONSISTENT');
    expect(r.stderr).toContain('/forward');
  });

  it('check warns, naming /store/redis/url and the reason, when the Redis store does not answer PING', async () => {
    const dir = configDir('default', 'forward: { host: 127.0.0.1, port: 10025 }\n');
    const port = await freePort();
    writeFileSync(
      path.join(dir, 'postseal.yaml'),
      `bankDir: banks\nlisteners:\n  - { port: 0, bank: default }\nstore: { backend: redis, redis: { url: "redis://127.0.0.1:${port}/0" } }\n`,
    );
    const r = runCli(['config', 'check', '--config', path.join(dir, 'postseal.yaml')]);
    expect(r.status).toBe(0);
    expect(r.stderr).toContain(
      `warning CFG_STORE_NOT_ANSWERING\n${path.join(dir, 'postseal.yaml')}: /store/redis/url: Redis at redis://127.0.0.1:${port}/0 did not answer PING (connect ECONNREFUSED 127.0.0.1:${port})`,
    );
  });

  it('invalid YAML names the file and line', () => {
    const dir = configDir('default', 'forward: { host: 127.0.0.1, port: 10025\n');
    const r = runCli(['config', 'check', '--config', path.join(dir, 'postseal.yaml')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('CFG_YAML_INVALID');
    expect(r.stderr).toContain('default.yaml:');
  });

  it('print shows the merged bank and its stage order', () => {
    const r = runCli(['config', 'print', 'ORIGINATING']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^# bank ORIGINATING \(stage order: /);
    expect(r.stdout).toContain('port: 10027');
  });

  it('--help lists every subcommand; an unknown command is a usage error', () => {
    const help = runCli(['--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/start \[--config FILE\]/);
    expect(help.stdout).toMatch(/config check\|print/);
    expect(runCli(['frobnicate']).status).toBe(2);
  });
});

describe('docs/config.md', () => {
  it('is what `postseal config docs` generates from the schemas (run `npm run docs` after changing a schema)', () => {
    const r = runCli(['config', 'docs']);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(require('node:fs').readFileSync(path.join(__dirname, '../../docs/config.md'), 'utf8'));
  });
});
