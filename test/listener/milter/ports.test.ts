/**
 * Milter listeners under the cluster (listener.ts, ports.ts): every worker binds the milter
 * port itself with SO_REUSEPORT and serves connections without the primary's hand-off, and a
 * port that another process holds is refused at start-up, before any worker shares it.
 */
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { assertMilterPortsFree } from '../../../src/listener/milter/ports';
import type { ListenerConfig } from '../../../src/config/main-schema';
import { startDaemon, type Daemon } from '../../helpers/cli';
import { MilterClient, messagePackets } from '../../helpers/milter-client';

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** TCP sockets in LISTEN state (0A) on 127.0.0.1:port, from /proc/net/tcp. */
function listeningSockets(port: number): number {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .filter((l) => {
      const f = l.trim().split(/\s+/);
      return f[1] === local && f[3] === '0A';
    }).length;
}

function milterListener(port: number): ListenerConfig {
  return { port, address: '127.0.0.1', bank: 'default', protocol: 'milter' } as ListenerConfig;
}

describe('assertMilterPortsFree', () => {
  it('refuses a milter port that another process holds, naming it, and leaves a free one free', async () => {
    const held = net.createServer();
    await new Promise<void>((r) => held.listen(0, '127.0.0.1', r));
    const port = (held.address() as AddressInfo).port;
    await expect(assertMilterPortsFree([milterListener(port)])).rejects.toMatchObject({ code: 'LISTEN_FAILED', message: expect.stringContaining(`127.0.0.1:${port}`) });
    await new Promise<void>((r) => held.close(() => r()));

    const free = await freePort();
    await assertMilterPortsFree([milterListener(free)]);
    // Let go again: the port can be bound at once.
    const again = net.createServer();
    await new Promise<void>((resolve, reject) => again.once('error', reject).listen(free, '127.0.0.1', resolve));
    await new Promise<void>((r) => again.close(() => r()));
  });
});

describe('a milter listener under two workers', () => {
  const started: Daemon[] = [];
  afterEach(() => {
    for (const d of started.splice(0)) if (d.proc.exitCode === null && d.proc.signalCode === null) d.proc.kill('SIGKILL');
  });

  it('is served by both workers from their own sockets, and a second postseal on the port is refused', async () => {
    const port = await freePort();
    const dir = mkdtempSync(path.join(tmpdir(), 'postseal-milter-cluster-'));
    mkdirSync(path.join(dir, 'banks'));
    writeFileSync(path.join(dir, 'banks', 'default.yaml'), 'forward: { host: 127.0.0.1, port: 9 }\nstages: [header-sanity]\n');
    const configFile = path.join(dir, 'postseal.yaml');
    writeFileSync(configFile, `bankDir: banks\nlisteners:\n  - { port: ${port}, bank: default, protocol: milter }\nworkers: 2\nshutdownGraceMs: 2000\n`);
    const d = startDaemon(configFile);
    started.push(d);
    await d.waitFor((l) => l.msg === 'postseal started');
    // Two listening sockets on the port, one per worker (the primary's shared socket would be one).
    expect(listeningSockets(port)).toBe(2);

    // Connections one after another, as Postfix opens one per SMTP session.
    for (let i = 0; i < 24; i++) {
      const c = await MilterClient.connect(port);
      await c.negotiate();
      const p = messagePackets({
        from: 'bob@remote.test',
        to: ['user@example.test'],
        macros: { E: { i: `CL${i}` } },
        header: [['From', ' <bob@remote.test>']],
        body: 'hi\r\n',
        data: true,
      });
      c.send(...p.envelope);
      expect((await c.next()).code).toBe('c'); // RCPT
      expect((await c.next()).code).toBe('c'); // DATA
      c.send(...p.content, p.eom);
      expect((await c.untilFinal()).at(-1)?.code).toBe('c');
      c.close();
    }
    const served = () => d.lines.filter((l) => l.msg === 'message' && String(l.queueId).startsWith('CL'));
    await d.waitFor(() => served().length === 24);
    // The kernel spreads connections by a hash of their addresses: 24 from fresh source ports reach both.
    expect(new Set(served().map((l) => l.worker)).size).toBe(2);

    const second = startDaemon(configFile);
    started.push(second);
    expect(await second.exited).toBe(1);
    expect(second.stderr()).toContain(`cannot listen on 127.0.0.1:${port}`);
  }, 60_000);
});
