/**
 * config/forward-loops.ts: a bank that forwards to postseal's own listener is found by
 * address (names resolved, wildcard listeners matching every local address), through the
 * loader's output and the real resolver (/etc/hosts has localhost); and listeners that other
 * hosts can reach are warned about.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { checkForwardLoops } from '../../src/config/forward-loops';
import { loadConfig } from '../../src/setup';
import { isPostsealError } from '../../src/errors';
import { createServer, type AddressInfo } from 'node:net';
import { runCli, startDaemon } from '../helpers/cli';
import { TestClient } from '../helpers/smtp-client';

/** Not bound by any test: the checks compare configured ports and never listen. */
const PORT = 10924;

function configWith(listener: Record<string, unknown>, bank: Record<string, unknown>): { dir: string; file: string; bankFile: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'postseal-loops-'));
  mkdirSync(path.join(dir, 'banks'));
  const bankFile = path.join(dir, 'banks', 'default.yaml');
  writeFileSync(bankFile, YAML.stringify({ notify: { host: '127.0.0.1', port: 10027 }, ...bank }));
  const file = path.join(dir, 'postseal.yaml');
  writeFileSync(file, YAML.stringify({ bankDir: 'banks', listeners: [{ bank: 'default', ...listener }] }));
  return { dir, file, bankFile };
}

async function loopError(listener: Record<string, unknown>, bank: Record<string, unknown>): Promise<{ err: unknown; bankFile: string }> {
  const cfg = configWith(listener, bank);
  const err = await checkForwardLoops(loadConfig(cfg.file)).then(
    () => undefined,
    (e) => e,
  );
  return { err, bankFile: cfg.bankFile };
}

const ownIpv4 = Object.values(networkInterfaces())
  .flatMap((l) => l ?? [])
  .find((a) => a.family === 'IPv4' && !a.internal)?.address;

describe('forward loop check', () => {
  it('forward: localhost to a listener on 127.0.0.1 and the same port is CFG_INCONSISTENT naming the bank file and /forward', async () => {
    const { err, bankFile } = await loopError({ address: '127.0.0.1', port: PORT }, { forward: { host: 'localhost', port: PORT } });
    expect(isPostsealError(err, 'CFG_INCONSISTENT')).toBe(true);
    expect((err as Error).message).toMatch(new RegExp(`^${bankFile.replace(/[.]/g, '\\.')}: /forward: localhost:${PORT} \\(127\\.0\\.0\\.1\\) is postseal's own listener`));
    expect((err as Error).message).toContain('reinjection smtpd');
  });

  it('another spelling of ::1 is the same address', async () => {
    const { err } = await loopError({ address: '::1', port: PORT }, { forward: { host: '0:0:0:0:0:0:0:1', port: PORT } });
    expect(isPostsealError(err, 'CFG_INCONSISTENT')).toBe(true);
  });

  it('a listener on 0.0.0.0 is reached through any local IPv4 address, and one on :: through loopback', async () => {
    expect(ownIpv4).toBeDefined();
    expect(isPostsealError((await loopError({ address: '0.0.0.0', port: PORT }, { forward: { host: ownIpv4, port: PORT } })).err, 'CFG_INCONSISTENT')).toBe(true);
    expect(isPostsealError((await loopError({ address: '::', port: PORT }, { forward: { host: '127.0.0.1', port: PORT } })).err, 'CFG_INCONSISTENT')).toBe(true);
  });

  it('the notify target is checked too', async () => {
    const { err } = await loopError({ address: '127.0.0.1', port: PORT }, { forward: { host: '127.0.0.1', port: 10025 }, notify: { host: 'localhost', port: PORT } });
    expect(isPostsealError(err, 'CFG_INCONSISTENT')).toBe(true);
    expect((err as Error).message).toContain(': /notify: ');
  });

  it('another port, or another loopback address than the one bound, is not a loop', async () => {
    expect((await loopError({ address: '127.0.0.1', port: PORT }, { forward: { host: 'localhost', port: PORT + 1 } })).err).toBeUndefined();
    expect((await loopError({ address: '127.0.0.1', port: PORT }, { forward: { host: '127.0.0.2', port: PORT } })).err).toBeUndefined();
    // 192.0.2.1 (TEST-NET-1) is not an address of this host unless an interface has it.
    const foreign = ownIpv4 === '192.0.2.1' ? '192.0.2.254' : '192.0.2.1';
    expect((await loopError({ address: '0.0.0.0', port: PORT }, { forward: { host: foreign, port: PORT } })).err).toBeUndefined();
  });

  it('a listener on a non-loopback address is warned about as an open relay; one on loopback is not', async () => {
    const open = configWith({ address: '0.0.0.0', port: PORT }, { forward: { host: '127.0.0.1', port: 10025 } });
    const warnings = await checkForwardLoops(loadConfig(open.file));
    expect(warnings).toEqual([expect.objectContaining({ code: 'CFG_LISTENER_NOT_LOOPBACK' })]);
    expect(warnings[0].message).toContain(`${open.file}: /listeners/0/address: 0.0.0.0`);
    expect(warnings[0].message).toContain('smtpd_client_restrictions');
    const closed = configWith({ address: '127.0.0.1', port: PORT }, { forward: { host: '127.0.0.1', port: 10025 } });
    expect(await checkForwardLoops(loadConfig(closed.file))).toEqual([]);
  });

  it('a forward host that does not resolve is a warning, not a refusal', async () => {
    const cfg = configWith({ address: '127.0.0.1', port: PORT }, { forward: { host: 'no-such-host.invalid', port: PORT } });
    expect(await checkForwardLoops(loadConfig(cfg.file))).toEqual([expect.objectContaining({ code: 'CFG_FORWARD_UNRESOLVED' })]);
  });
});

describe('postseal config check and start with a forward loop through a name', () => {
  it('config check and start both refuse forward: localhost to the own listener, with exit 1', () => {
    const cfg = configWith({ address: '127.0.0.1', port: PORT }, { forward: { host: 'localhost', port: PORT } });
    const check = runCli(['config', 'check', '--config', cfg.file]);
    expect(check.status).toBe(1);
    expect(check.stderr).toContain('configuration error CFG_INCONSISTENT');
    expect(check.stderr).toContain(`${cfg.bankFile}: /forward: `);
    const start = runCli(['start', '--config', cfg.file]);
    expect(start.status).toBe(1);
    expect(start.stderr).toContain('configuration error CFG_INCONSISTENT');
    expect(start.stdout).not.toContain('postseal started');
  });

  it('config check prints the open-relay warning and still exits 0', () => {
    const cfg = configWith({ address: '0.0.0.0', port: PORT }, { forward: { host: '127.0.0.1', port: 10025 } });
    const check = runCli(['config', 'check', '--config', cfg.file]);
    expect(check.status).toBe(0);
    expect(check.stderr).toContain('warning CFG_LISTENER_NOT_LOOPBACK');
  });
});

test('SIGHUP with a bank that now forwards to the own listener through a name is refused with CFG_INCONSISTENT; the daemon keeps running', async () => {
  const port = await freePort();
  const cfg = configWith({ address: '127.0.0.1', port }, { forward: { host: '127.0.0.1', port: 10025 } });
  const d = startDaemon(cfg.file);
  try {
    await d.waitFor((l) => l.msg === 'postseal started');
    writeFileSync(cfg.bankFile, YAML.stringify({ forward: { host: 'localhost', port } }));
    d.proc.kill('SIGHUP');
    const refused = await d.waitFor((l) => String(l.msg).startsWith('reload failed'));
    expect(refused).toMatchObject({ code: 'CFG_INCONSISTENT' });
    expect(JSON.stringify(refused)).toContain(`${cfg.bankFile}: /forward: localhost:${port}`);
    const c = await TestClient.connect(port);
    expect(await c.cmd('EHLO test.example')).toMatchObject({ code: 250 });
    await c.quit();
  } finally {
    d.proc.kill('SIGTERM');
    await d.exited;
  }
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}
