/**
 * The milter socket of a cluster (src/cluster/shared-sockets.ts), with the built `postseal
 * start` and real worker processes: the primary binds it once and never accepts on it, the
 * workers accept from it, and it outlives worker crashes and reloads. Whether a connection was
 * accepted is read from the kernel (/proc/net/tcp: a listening socket's accept queue), whether
 * it was served from the milter's answer to option negotiation.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { startDaemon, type Daemon } from '../helpers/cli';
import { MilterClient, messagePackets } from '../helpers/milter-client';

const blockLoop = path.resolve(__dirname, '../fixtures/scripts/block-loop-on-signal.js');

const started: Daemon[] = [];
afterEach(() => {
  for (const d of started.splice(0)) {
    for (const l of d.lines.filter((x) => x.msg === 'worker started')) {
      try {
        process.kill(l.pid as number, 'SIGCONT');
      } catch {
        // Already gone.
      }
    }
    if (d.proc.exitCode === null && d.proc.signalCode === null) d.proc.kill('SIGKILL');
  }
});

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

function configFile(listeners: Record<string, unknown>[], dir = mkdtempSync(path.join(tmpdir(), 'postseal-shared-')), workers = 2): string {
  mkdirSync(path.join(dir, 'banks'), { recursive: true });
  writeFileSync(path.join(dir, 'banks', 'default.yaml'), YAML.stringify({ forward: { host: '127.0.0.1', port: 9 }, stages: ['loop-guard', 'header-sanity'] }));
  const file = path.join(dir, 'postseal.yaml');
  writeFileSync(file, YAML.stringify({ bankDir: 'banks', workers, shutdownGraceMs: 2000, spool: { dir: path.join(dir, 'spool') }, listeners }));
  return file;
}

const milterAt = (port: number, extra: Record<string, unknown> = {}) => ({ address: '127.0.0.1', port, bank: 'default', protocol: 'milter', ...extra });

async function cluster(port: number, opts: Parameters<typeof startDaemon>[1] = {}, listeners = [milterAt(port)]) {
  const file = configFile(listeners);
  const d = startDaemon(file, { nodeArgs: ['--require', blockLoop], ...opts });
  started.push(d);
  await d.waitFor((l) => l.msg === 'postseal started');
  return { d, file, workers: await workerPids(d, 2) };
}

/** The pids of the workers that logged 'worker started', once `count` have (the newest last). */
async function workerPids(d: Daemon, count: number): Promise<number[]> {
  const pids = () => [...new Set(d.lines.filter((l) => l.msg === 'worker started').map((l) => l.pid as number))];
  await d.waitFor(() => pids().length >= count);
  return pids();
}

/** The listening socket on 127.0.0.1:port as the kernel shows it: its inode and how many connections wait to be accepted. */
function listening(port: number): { inode: string; queued: number } | undefined {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1] === local && f[3] === '0A') return { inode: f[9], queued: Number.parseInt(f[4].split(':')[1], 16) };
  }
  return undefined;
}

/** Connects and sends option negotiation; `served` resolves with the time of the milter's answer, or rejects if the connection is reset or closed first. */
async function offer(port: number): Promise<{ client: MilterClient; served: Promise<number> }> {
  const client = await MilterClient.connect(port);
  return { client, served: client.negotiate().then(() => Date.now()) };
}

/** One message over its own connection, as Postfix sends a session per message. */
async function oneMessage(port: number): Promise<void> {
  const c = await MilterClient.connect(port);
  await c.negotiate();
  const p = messagePackets({
    from: 'a@example.org',
    to: ['b@example.net'],
    header: [
      ['From', ' <a@example.org>'],
      ['Subject', ' x'],
    ],
    body: 'hi\r\n',
  });
  c.send(...p.envelope, ...p.content, p.eom);
  expect((await c.next()).code).toBe('c');
  await c.untilFinal();
  c.close();
}

describe('the milter socket of a cluster', () => {
  it('is never accepted on by the primary: with every worker stopped, sessions wait in the backlog and are served when the workers run again', async () => {
    const port = await freePort();
    const { d, workers } = await cluster(port);
    for (const pid of workers) process.kill(pid, 'SIGSTOP');
    const offers = await Promise.all(Array.from({ length: 6 }, () => offer(port)));
    await new Promise((r) => setTimeout(r, 1000));
    // All six still in the kernel's accept queue: nobody, the primary included, took one.
    expect(listening(port)?.queued).toBe(6);
    expect(offers.filter((o) => o.client.closed)).toHaveLength(0);
    for (const pid of workers) process.kill(pid, 'SIGCONT');
    await Promise.all(offers.map((o) => o.served));
    expect(listening(port)?.queued).toBe(0);
    for (const o of offers) o.client.close();
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
  });

  it('leaves a worker whose event loop is stuck for 4 s no new sessions: the other serves all 20 at once', async () => {
    const port = await freePort();
    const { d, workers } = await cluster(port);
    process.kill(workers[0], 'SIGUSR2');
    await d.waitFor((l) => l.msg === 'test: event loop blocked');
    const t0 = Date.now();
    const offers = await Promise.all(Array.from({ length: 20 }, () => offer(port)));
    const times = await Promise.all(offers.map((o) => o.served.then((t) => t - t0)));
    // Node's round robin hands the stuck worker one of them, served only after the 4 s.
    expect(times.filter((t) => t < 2500)).toHaveLength(20);
    for (const o of offers) o.client.close();
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
  });

  it('shares sessions between two workers, each taking a fair part of 100 sessions one after another', async () => {
    const port = await freePort();
    const { d } = await cluster(port);
    for (let i = 0; i < 100; i++) await oneMessage(port);
    await d.waitFor(() => d.lines.filter((l) => l.msg === 'message').length === 100);
    const byWorker = new Map<unknown, number>();
    for (const l of d.lines.filter((x) => x.msg === 'message')) byWorker.set(l.worker, (byWorker.get(l.worker) ?? 0) + 1);
    expect(byWorker.size).toBe(2);
    // Measured 45-55 each on an idle machine; a busy one tilts it, never to one worker.
    for (const n of byWorker.values()) expect(n).toBeGreaterThanOrEqual(20);
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
  }, 30_000);

  it('keeps the socket, and the sessions queued on it, when every worker dies: the replacements serve them', async () => {
    const port = await freePort();
    const { d, workers } = await cluster(port);
    const socket = listening(port)!;
    for (const pid of workers) process.kill(pid, 'SIGSTOP');
    const offers = await Promise.all(Array.from({ length: 5 }, () => offer(port)));
    for (const pid of workers) process.kill(pid, 'SIGKILL');
    const fresh = (await workerPids(d, 4)).slice(2);
    expect(fresh).toHaveLength(2);
    await Promise.all(offers.map((o) => o.served));
    expect(listening(port)?.inode).toBe(socket.inode);
    expect(d.lines.filter((l) => l.msg === 'milter socket bound for the workers')).toHaveLength(1);
    for (const o of offers) o.client.close();
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
  });

  it('keeps the socket through a reload that restarts the milter listener on its port: sessions meanwhile are all served', async () => {
    const port = await freePort();
    const { d, file } = await cluster(port);
    const socket = listening(port)!;
    const config = YAML.parse(readFileSync(file, 'utf8'));
    config.listeners = [milterAt(port, { maxConnections: 50 })];
    writeFileSync(file, YAML.stringify(config));
    d.proc.kill('SIGHUP');
    const offers = [];
    while (d.lines.filter((l) => l.msg === 'configuration reloaded').length < 2) {
      offers.push(await offer(port));
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(offers.length).toBeGreaterThan(0);
    await Promise.all(offers.map((o) => o.served));
    expect(listening(port)?.inode).toBe(socket.inode);
    expect(d.lines.filter((l) => l.msg === 'milter socket bound for the workers')).toHaveLength(1);
    for (const o of offers) o.client.close();
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
  });

  it('binds the new port of a reload that moves the milter listener before closing the old one', async () => {
    const [port, moved] = [await freePort(), await freePort()];
    const { d, file } = await cluster(port);
    const config = YAML.parse(readFileSync(file, 'utf8'));
    config.listeners = [milterAt(moved)];
    writeFileSync(file, YAML.stringify(config));
    d.proc.kill('SIGHUP');
    await d.waitFor((l) => l.msg === 'milter socket closed');
    const events = d.lines.filter((l) => /^milter socket/.test(l.msg as string)).map((l) => [l.msg, l.port]);
    expect(events).toEqual([
      ['milter socket bound for the workers', port],
      ['milter socket bound for the workers', moved],
      ['milter socket closed', port],
    ]);
    const { client, served } = await offer(moved);
    await served;
    client.close();
    expect(listening(port)).toBeUndefined();
    await expect(MilterClient.connect(port)).rejects.toThrow(/ECONNREFUSED/);
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
  });

  it('refuses a second postseal on the same milter port (EADDRINUSE), and the first keeps serving', async () => {
    const port = await freePort();
    const { d } = await cluster(port);
    const second = startDaemon(configFile([milterAt(port)]));
    started.push(second);
    let stderr = '';
    second.proc.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    expect(await second.exited).toBe(1);
    expect(stderr).toMatch(/cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/);
    await second.waitFor((l) => l.msg === 'worker failed to start, stopping', 2000);
    const { client, served } = await offer(port);
    await served;
    client.close();
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
  });
});

/** Rewrites the configuration's listeners, sends SIGHUP and waits until both workers answered it (reloaded or refused). */
async function reloadWith(d: Daemon, file: string, listeners: Record<string, unknown>[]): Promise<void> {
  const done = () => d.lines.filter((l) => l.msg === 'configuration reloaded' || /^reload (failed|refused)/.test(l.msg as string)).length;
  const before = done();
  const config = YAML.parse(readFileSync(file, 'utf8'));
  config.listeners = listeners;
  writeFileSync(file, YAML.stringify(config));
  d.proc.kill('SIGHUP');
  await d.waitFor(() => done() >= before + 2);
}

describe('the milter socket of a cluster, under reloads that cannot move it', () => {
  it('refuses a reload that gives the milter port to an SMTP listener, and the workers keep serving milter sessions on it', async () => {
    const port = await freePort();
    const { d, file } = await cluster(port);
    await reloadWith(d, file, [{ address: '127.0.0.1', port, bank: 'default' }]);
    const failed = d.lines.filter((l) => l.msg === 'reload failed, keeping the running configuration');
    expect(failed.map((l) => l.code)).toEqual(['CFG_INCONSISTENT', 'CFG_INCONSISTENT']);
    expect(failed[0].reason).toMatch(/is the running milter listener's on 127\.0\.0\.1; with several workers that move needs a restart/);
    const { client, served } = await offer(port);
    await served;
    client.close();
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
  });

  it('refuses a reload that moves the milter listener to the wildcard address on its port, and the workers keep serving it', async () => {
    const port = await freePort();
    const { d, file } = await cluster(port);
    await reloadWith(d, file, [milterAt(port, { address: '0.0.0.0' })]);
    expect(d.lines.filter((l) => l.msg === 'reload failed, keeping the running configuration')).toHaveLength(2);
    const { client, served } = await offer(port);
    await served;
    client.close();
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
  });
});

describe('a single process (workers: 1)', () => {
  it('moves a milter listener to the wildcard address on its port at a reload', async () => {
    const port = await freePort();
    const file = configFile([milterAt(port)], undefined, 1);
    const d = startDaemon(file);
    started.push(d);
    await d.waitFor((l) => l.msg === 'postseal started');
    d.lines.length = 0;
    const config = YAML.parse(readFileSync(file, 'utf8'));
    config.listeners = [milterAt(port, { address: '0.0.0.0' })];
    writeFileSync(file, YAML.stringify(config));
    d.proc.kill('SIGHUP');
    const done = await d.waitFor((l) => l.msg === 'configuration reloaded' || l.msg === 'reload failed, keeping the running configuration');
    expect(done.msg).toBe('configuration reloaded');
    expect(d.lines.filter((l) => l.msg === 'listening').map((l) => l.address)).toEqual(['0.0.0.0']);
    const { client, served } = await offer(port);
    await served;
    client.close();
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
  });
});

describe('a cluster on a Node without net._createServerHandle', () => {
  it("serves milter sessions through Node's round robin, the primary binding nothing itself", async () => {
    const port = await freePort();
    const d = startDaemon(configFile([milterAt(port)]), { nodeArgs: ['--require', path.resolve(__dirname, '../fixtures/scripts/no-create-server-handle.js')] });
    started.push(d);
    await d.waitFor((l) => l.msg === 'postseal started');
    await workerPids(d, 2);
    for (let i = 0; i < 4; i++) await oneMessage(port);
    await d.waitFor(() => d.lines.filter((l) => l.msg === 'message').length === 4);
    expect(d.lines.filter((l) => l.msg === 'milter socket bound for the workers')).toHaveLength(0);
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
  });
});

describe('a cluster on a Node whose net._createServerHandle takes other arguments', () => {
  it("serves milter sessions through Node's round robin and says why", async () => {
    const port = await freePort();
    const d = startDaemon(configFile([milterAt(port)]), { nodeArgs: ['--require', path.resolve(__dirname, '../fixtures/scripts/changed-create-server-handle.js')] });
    started.push(d);
    await d.waitFor((l) => l.msg === 'postseal started');
    for (let i = 0; i < 4; i++) await oneMessage(port);
    await d.waitFor(() => d.lines.filter((l) => l.msg === 'message').length === 4);
    const warned = await d.waitFor((l) => /^milter socket not bound/.test(l.msg as string));
    expect(warned.reason).toMatch(/^ENOSYS: net\._createServerHandle failed \(The "options" argument/);
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
  });
});

describe("the primary's file descriptors", () => {
  const fds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

  it('stay as many after worker crashes and reloads that restart and move the milter listener', async () => {
    const [port, moved] = [await freePort(), await freePort()];
    const { d, file, workers } = await cluster(port);
    const primary = d.proc.pid!;
    const before = fds(primary);
    let known = workers.length;
    for (let round = 0; round < 3; round++) {
      for (const pid of (await workerPids(d, known)).slice(-2)) process.kill(pid, 'SIGKILL');
      known += 2;
      await workerPids(d, known);
      await d.waitFor(() => d.lines.filter((l) => l.msg === 'worker started').length >= known);
      await reloadWith(d, file, [milterAt(round % 2 ? port : moved, { maxConnections: 100 + round })]);
    }
    await reloadWith(d, file, [milterAt(port)]);
    const { client, served } = await offer(port);
    await served;
    client.close();
    expect(d.lines.filter((l) => l.msg === 'reload failed, keeping the running configuration')).toHaveLength(0);
    expect(fds(primary)).toBe(before);
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
  }, 60_000);
});

describe('a burst of milter sessions', () => {
  // Fails: the worker that runs first accepts all six and refuses three above its limit, though
  // the other one is free a moment later (Node's round robin gave it its three). Review finding, not fixed.
  it.failing('is not refused while another worker is free a moment later: 2 workers of maxConnections 3 serve 6 sessions that arrive at once', async () => {
    const port = await freePort();
    const { d, workers } = await cluster(port, {}, [milterAt(port, { maxConnections: 3 })]);
    for (const pid of workers) process.kill(pid, 'SIGSTOP');
    const offers = await Promise.all(Array.from({ length: 6 }, () => offer(port)));
    const ends = Promise.all(
      offers.map((o) =>
        o.served.then(
          () => 'served',
          (err: Error) => err.message,
        ),
      ),
    );
    process.kill(workers[0], 'SIGCONT');
    await new Promise((r) => setTimeout(r, 300));
    process.kill(workers[1], 'SIGCONT');
    expect(await ends).toEqual(Array(6).fill('served'));
    for (const o of offers) o.client.close();
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
  });
});

describe('a milter socket no worker takes any more', () => {
  it('closes when the configuration moved the listener while every worker was down: the old port refuses instead of queueing', async () => {
    const [port, moved] = [await freePort(), await freePort()];
    const { d, file, workers } = await cluster(port);
    for (const pid of workers) process.kill(pid, 'SIGKILL');
    // The replacements (after the primary's restart delay) read the moved listener.
    const config = YAML.parse(readFileSync(file, 'utf8'));
    config.listeners = [milterAt(moved)];
    writeFileSync(file, YAML.stringify(config));
    await workerPids(d, 4);
    await d.waitFor(() => d.lines.filter((l) => l.msg === 'listening' && l.port === moved).length === 2);
    const { client, served } = await offer(moved);
    await served;
    client.close();
    await d.waitFor((l) => l.msg === 'milter socket closed' && l.port === port, 2000);
    expect(listening(port)).toBeUndefined();
    await expect(MilterClient.connect(port)).rejects.toThrow(/ECONNREFUSED/);
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
  });
});

describe('the milter socket across reloads that change nothing of it', () => {
  it('stays, and is served, through a reload of an invalid file', async () => {
    const port = await freePort();
    const { d, file } = await cluster(port);
    const socket = listening(port)!;
    await reloadWith(d, file, [milterAt(port, { maxConnections: 0 })]);
    expect(d.lines.filter((l) => l.code === 'CFG_SCHEMA_INVALID')).toHaveLength(2);
    expect(listening(port)?.inode).toBe(socket.inode);
    const { client, served } = await offer(port);
    await served;
    client.close();
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
  });

  it('leaves a worker as many file descriptors after ten reloads that restart its milter listener', async () => {
    const port = await freePort();
    const { d, file, workers } = await cluster(port);
    const fds = () => readdirSync(`/proc/${workers[0]}/fd`).length;
    const before = fds();
    for (let i = 1; i <= 10; i++) await reloadWith(d, file, [milterAt(port, { maxConnections: 100 + i })]);
    expect(d.lines.filter((l) => l.msg === 'configuration reloaded')).toHaveLength(20);
    // The old downstream pools close a second after a reload.
    await new Promise((r) => setTimeout(r, 1200));
    expect(fds()).toBe(before);
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
  }, 30_000);
});

describe('a milter listener of a cluster on the IPv6 wildcard', () => {
  it('takes IPv4 sessions too, as a listener of one process on :: does', async () => {
    const port = await freePort();
    const { d } = await cluster(port, {}, [milterAt(port, { address: '::' })]);
    const { client, served } = await offer(port);
    await served;
    client.close();
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
  });
});

describe('a reload racing a worker restart', () => {
  it('ends with both workers on the moved port and the old socket closed when one worker is down at the SIGHUP', async () => {
    const [port, moved] = [await freePort(), await freePort()];
    const { d, file, workers } = await cluster(port);
    process.kill(workers[1], 'SIGKILL');
    await d.waitFor((l) => l.msg === 'worker ended, replacing it');
    const config = YAML.parse(readFileSync(file, 'utf8'));
    config.listeners = [milterAt(moved)];
    writeFileSync(file, YAML.stringify(config));
    d.proc.kill('SIGHUP');
    await workerPids(d, 3);
    await d.waitFor(() => d.lines.filter((l) => l.msg === 'listening' && l.port === moved).length === 2);
    await d.waitFor((l) => l.msg === 'milter socket closed' && l.port === port, 3000);
    expect(listening(port)).toBeUndefined();
    for (let i = 0; i < 4; i++) await oneMessage(moved);
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
  });
});

describe('SIGTERM with sessions queued on the milter socket', () => {
  it('answers or closes every queued session (Postfix then applies milter_default_action) and exits 0', async () => {
    const port = await freePort();
    const { d, workers } = await cluster(port);
    for (const pid of workers) process.kill(pid, 'SIGSTOP');
    const offers = await Promise.all(Array.from({ length: 4 }, () => offer(port)));
    const ends = Promise.all(
      offers.map((o) =>
        o.served.then(
          () => 'served',
          (err: Error) => err.message,
        ),
      ),
    );
    d.proc.kill('SIGTERM');
    await d.waitFor((l) => l.msg === 'draining');
    for (const pid of workers) process.kill(pid, 'SIGCONT');
    expect(await d.exited).toBe(0);
    // Each either got its answer or saw the connection end; none is left waiting.
    for (const end of await ends) expect(end).toMatch(/^served$|^milter connection closed$/);
    for (const o of offers) o.client.close();
    expect(listening(port)).toBeUndefined();
  });
});

describe('a reload that cannot bind one of its new milter ports', () => {
  it('is refused whole: the other new port does not stay listening, the running ports keep serving', async () => {
    const [a, b, q1] = [await freePort(), await freePort(), await freePort()];
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const q2 = (taken.address() as net.AddressInfo).port;
    const { d, file } = await cluster(a, {}, [milterAt(a), milterAt(b)]);
    await reloadWith(d, file, [milterAt(q1), milterAt(q2)]);
    expect(d.lines.filter((l) => l.msg === 'reload failed, keeping the running configuration')).toHaveLength(2);
    await d.waitFor((l) => l.msg === 'milter socket closed' && l.port === q1, 3000);
    expect(listening(q1)).toBeUndefined();
    for (const port of [a, b]) {
      const { client, served } = await offer(port);
      await served;
      client.close();
    }
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
    await new Promise((resolve) => taken.close(resolve));
  });
});

describe('a refused reload of a single process (workers: 1)', () => {
  it('listens again on the port of a listener it had restarted for a changed setting', async () => {
    const [a, b] = [await freePort(), await freePort()];
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const q = (taken.address() as net.AddressInfo).port;
    const file = configFile([milterAt(a), milterAt(b)], undefined, 1);
    const d = startDaemon(file);
    started.push(d);
    await d.waitFor((l) => l.msg === 'postseal started');
    const config = YAML.parse(readFileSync(file, 'utf8'));
    config.listeners = [milterAt(q), milterAt(a, { maxConnections: 50 })];
    writeFileSync(file, YAML.stringify(config));
    d.proc.kill('SIGHUP');
    await d.waitFor((l) => l.msg === 'reload failed, keeping the running configuration');
    for (const port of [a, b]) {
      const { client, served } = await offer(port);
      await served;
      client.close();
    }
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
    await new Promise((resolve) => taken.close(resolve));
  });
});
