/**
 * The signing files through the built `postseal` command: a bad signing table stops start-up
 * with the file and the JSON pointer; SIGHUP after a key file was removed keeps the running
 * keys and says so.
 */
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { runCli, startDaemon } from '../helpers/cli';
import { rsaKey, writeSigningFiles } from '../helpers/dkim-verifiers';
import { startSink } from '../helpers/sink';
import { TestClient } from '../helpers/smtp-client';

function config(forwardPort: number, dkimSign: Record<string, string>): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'postseal-signing-'));
  mkdirSync(path.join(dir, 'banks'));
  writeFileSync(path.join(dir, 'banks', 'default.yaml'), YAML.stringify({ forward: { host: '127.0.0.1', port: forwardPort }, originating: true, stages: ['dkim-sign'] }));
  writeFileSync(path.join(dir, 'postseal.yaml'), YAML.stringify({ bankDir: 'banks', listeners: [{ port: 0, bank: 'default' }], dkimSign }));
  return path.join(dir, 'postseal.yaml');
}

describe('postseal start with signing keys', () => {
  it('refuses a catch-all signing rule with exit 1, naming the signing table and the JSON pointer', () => {
    const files = writeSigningFiles([rsaKey], [{ author: '*', keys: ['example-rsa'] }]);
    const r = runCli(['start', '--config', config(25, files)]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('CFG_SIGNING_CATCH_ALL');
    expect(r.stderr).toContain(`${files.signingTableFile}: /0/author:`);
  });

  it('refuses a missing key file with exit 1, naming the key table and the key', () => {
    const files = writeSigningFiles([{ ...rsaKey, file: '/nonexistent.pem' }], [{ author: 'example.com', keys: ['example-rsa'] }]);
    const r = runCli(['config', 'check', '--config', config(25, files)]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`CFG_KEY_UNREADABLE\n${files.keyTableFile}: /example-rsa/keyFile: /nonexistent.pem: cannot read`);
  });

  it('SIGHUP after the key file was removed keeps the running keys, logs the refusal and goes on signing', async () => {
    const sink = await startSink();
    const keyFile = path.join(mkdtempSync(path.join(tmpdir(), 'postseal-key-')), 'key.pem');
    copyFileSync(rsaKey.file, keyFile);
    const d = startDaemon(config(sink.port, writeSigningFiles([{ ...rsaKey, file: keyFile }], [{ author: 'example.com', keys: ['example-rsa'] }])));
    try {
      const port = (await d.waitFor((l) => l.msg === 'listening')).port as number;
      rmSync(keyFile);
      d.proc.kill('SIGHUP');
      await d.waitFor((l) => String(l.msg).startsWith('reload refused'));
      const c = await TestClient.connect(port);
      const r = await c.send({ from: 'a@example.com', to: ['b@example.net'], data: 'From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n' });
      await c.quit();
      expect(r.final?.code).toBe(250);
      expect(sink.received[0].data.toString()).toMatch(/^DKIM-Signature: v=1; a=rsa-sha256;/);
    } finally {
      d.proc.kill('SIGTERM');
      await d.exited;
      await sink.close();
    }
  });

  it('warns, naming the key file and the fix, about a key readable by others: in config check and in the start-up log; not about a 0600 key', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'postseal-key-'));
    const open = path.join(dir, 'open.pem');
    const closed = path.join(dir, 'closed.pem');
    copyFileSync(rsaKey.file, open);
    copyFileSync(rsaKey.file, closed);
    chmodSync(open, 0o644);
    chmodSync(closed, 0o600);
    const files = writeSigningFiles(
      [
        { ...rsaKey, file: open },
        { ...rsaKey, name: 'closed-rsa', selector: 'closed', file: closed },
      ],
      [{ author: 'example.com', keys: ['example-rsa', 'closed-rsa'] }],
    );
    const file = config(25, files);
    const check = runCli(['config', 'check', '--config', file]);
    expect(check.status).toBe(0);
    expect(check.stderr).toContain(`warning CFG_KEY_PERMISSIONS\n${files.keyTableFile}: /example-rsa/keyFile: ${open} has mode 0644`);
    expect(check.stderr).toContain(`chmod 600 ${open}`);
    expect(check.stderr).not.toContain(closed);
    const d = startDaemon(file);
    try {
      const line = await d.waitFor((l) => l.code === 'CFG_KEY_PERMISSIONS');
      expect(line).toMatchObject({ level: 40, msg: expect.stringContaining(open) });
      await d.waitFor((l) => l.msg === 'postseal started');
      expect(d.lines.filter((l) => l.code === 'CFG_KEY_PERMISSIONS')).toHaveLength(1);
    } finally {
      d.proc.kill('SIGTERM');
      await d.exited;
    }
  });
});
