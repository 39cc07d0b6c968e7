import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cliMain, root, runCli, startDaemon } from '../helpers/cli';
import { startSink } from '../helpers/sink';
import { TestClient } from '../helpers/smtp-client';

const msg = 'From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n';

function writeConfig(dir: string, forwardPort: number, banner: string) {
  writeFileSync(path.join(dir, 'banks', 'default.yaml'), `forward: { host: 127.0.0.1, port: ${forwardPort} }\ngreetingBanner: ${banner}\n`);
}

async function setup() {
  const sink = await startSink();
  const dir = mkdtempSync(path.join(tmpdir(), 'postseal-daemon-'));
  mkdirSync(path.join(dir, 'banks'));
  writeConfig(dir, sink.port, 'first');
  writeFileSync(path.join(dir, 'postseal.yaml'), 'bankDir: banks\nlisteners:\n  - { port: 0, bank: default }\nshutdownGraceMs: 10000\n');
  const d = startDaemon(path.join(dir, 'postseal.yaml'));
  const started = await d.waitFor((l) => l.msg === 'listening');
  return { sink, dir, d, port: started.port as number };
}

describe('postseal start', () => {
  it('SIGTERM lets a message in flight finish, then exits 0', async () => {
    const { sink, d, port } = await setup();
    sink.behaviour = {};
    const c = await TestClient.connect(port);
    await c.cmd('EHLO x');
    await c.cmd('MAIL FROM:<a@example.org>');
    await c.cmd('RCPT TO:<b@example.net>');
    await c.cmd('DATA');
    c.write(msg);
    d.proc.kill('SIGTERM');
    await d.waitFor((l) => l.msg === 'draining');
    c.write('.\r\n');
    const final = await c.read();
    expect(final.code).toBe(250);
    expect(await d.exited).toBe(0);
    expect(sink.received).toHaveLength(1);
    await sink.close();
  });

  it('SIGHUP applies a valid new configuration and keeps the running one when the new one is invalid', async () => {
    const { sink, dir, d, port } = await setup();
    writeConfig(dir, sink.port, 'second');
    d.proc.kill('SIGHUP');
    await d.waitFor((l) => l.msg === 'configuration reloaded');
    const c1 = await TestClient.connect(port).catch(() => null);
    // The banner changed, so the listener was restarted on a new port 0: find it.
    const relisten = d.lines.filter((l) => l.msg === 'listening').pop()!;
    c1?.socket.destroy();
    const c = await TestClient.connect(relisten.port as number);
    expect((await c.send({ from: 'a@example.org', to: ['b@example.net'], data: msg })).final?.code).toBe(250);
    await c.quit();

    writeFileSync(path.join(dir, 'banks', 'default.yaml'), 'forward: { host: 127.0.0.1, port: nope }\n');
    d.proc.kill('SIGHUP');
    const refused = await d.waitFor((l) => String(l.msg).startsWith('reload refused'));
    expect(refused).toMatchObject({ level: 50, code: 'CFG_SCHEMA_INVALID', file: path.join(dir, 'banks', 'default.yaml'), pointer: '/forward/port' });
    expect(refused.reason).toContain('/forward/port');
    expect(refused.err).toBeUndefined();
    const c2 = await TestClient.connect(relisten.port as number);
    expect((await c2.send({ from: 'a@example.org', to: ['b@example.net'], data: msg })).final?.code).toBe(250);
    await c2.quit();
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
    expect(sink.received).toHaveLength(2);
    await sink.close();
  });

  it('--pid-file holds the pid of the process that was started, and is removed when it exits', async () => {
    const sink = await startSink();
    const dir = mkdtempSync(path.join(tmpdir(), 'postseal-pid-'));
    mkdirSync(path.join(dir, 'banks'));
    writeConfig(dir, sink.port, 'first');
    writeFileSync(path.join(dir, 'postseal.yaml'), 'bankDir: banks\nlisteners:\n  - { port: 0, bank: default }\n');
    const pidFile = path.join(dir, 'postseal.pid');
    const d = startDaemon(path.join(dir, 'postseal.yaml'), { args: ['--workers', '2', '--pid-file', pidFile] });
    const started = await d.waitFor((l) => l.msg === 'postseal started');
    expect(started.pid).toBe(d.proc.pid);
    expect(readFileSync(pidFile, 'utf8')).toBe(`${d.proc.pid}\n`);
    // A second start on the same pid file is refused and leaves the running one's file alone.
    const second = runCli(['start', '--config', path.join(dir, 'postseal.yaml'), '--pid-file', pidFile]);
    expect(second.status).toBe(1);
    expect(second.stderr).toContain(`names pid ${d.proc.pid}, a running process`);
    expect(readFileSync(pidFile, 'utf8')).toBe(`${d.proc.pid}\n`);
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
    expect(existsSync(pidFile)).toBe(false);
    await sink.close();
  });

  it('a port another program holds (amavisd not stopped yet) stops start-up with LISTEN_FAILED, the listener pointer and the fix, without a stack', async () => {
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as net.AddressInfo).port;
    try {
      const dir = mkdtempSync(path.join(tmpdir(), 'postseal-port-'));
      mkdirSync(path.join(dir, 'banks'));
      writeFileSync(path.join(dir, 'banks', 'default.yaml'), 'forward: { host: 127.0.0.1, port: 10025 }\n');
      const file = path.join(dir, 'postseal.yaml');
      writeFileSync(file, `bankDir: banks\nlisteners:\n  - { port: 0, bank: default }\n  - { port: ${port}, bank: default }\n`);
      const d = startDaemon(file, { args: ['--workers', '1'] });
      const stdout: string[] = [];
      d.proc.stdout.on('data', (b: Buffer) => stdout.push(b.toString()));
      expect(await d.exited).toBe(1);
      expect(d.stderr()).toMatch(
        new RegExp(
          `^postseal: cannot start: LISTEN_FAILED\n${file}: /listeners/1: cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE.*; another program listens there .*ss -ltnp`,
        ),
      );
      expect(`${d.stderr()}${stdout.join('')}`).not.toMatch(/\n\s+at /);
    } finally {
      holder.close();
    }
  });

  it('on a Node older than 24 (Debian 12 has 20) every command stops with NODE_UNSUPPORTED and the launcher to run instead', () => {
    const r = spawnSync('/usr/bin/node', [cliMain, 'config', 'check'], { encoding: 'utf8' });
    expect(spawnSync('/usr/bin/node', ['-p', 'process.versions.node'], { encoding: 'utf8' }).stdout).toMatch(/^(1\d|2[0-3])\./);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('postseal: cannot start: NODE_UNSUPPORTED\n/usr/bin/node is Node.js');
    expect(r.stderr).toContain(`run ${path.join(root, 'bin/postseal')}`);
  });

  it('an unwritable --pid-file stops start-up with exit 1 and says where', () => {
    const r = runCli(['start', '--config', path.join(__dirname, '../../postseal.yaml'), '--pid-file', '/nonexistent-dir/postseal.pid']);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('cannot write the pid file /nonexistent-dir/postseal.pid');
  });
});
