/**
 * The milter socket of a cluster across reloads (src/cluster/shared-sockets.ts,
 * src/listener/service.ts): a move the other workers' listeners forbid is refused before
 * anything closes, a refused reload leaves no new socket behind and the running ones
 * listening, a socket no worker takes any more closes, and one process moves its listeners.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import YAML from 'yaml';
import { startDaemon } from '../helpers/cli';
import { MilterClient } from '../helpers/milter-client';
import { cluster, configFile, freePort, listening, milterAt, oneMessage, reloadWith, serveOne, started, stop, stopStarted, workerPids } from '../helpers/milter-cluster';

// Each test starts a cluster of real processes; under CI's parallel load a start alone has taken over 15 s.
jest.setTimeout(120_000);
afterEach(stopStarted);

describe('the milter socket of a cluster, under reloads that cannot move it', () => {
  it('refuses a reload that gives the milter port to an SMTP listener, and the workers keep serving milter sessions on it', async () => {
    const port = await freePort();
    const { d, file } = await cluster(port);
    await reloadWith(d, file, [{ address: '127.0.0.1', port, bank: 'default' }]);
    const failed = d.lines.filter((l) => l.msg === 'reload failed, keeping the running configuration');
    expect(failed.map((l) => l.code)).toEqual(['CFG_INCONSISTENT', 'CFG_INCONSISTENT']);
    expect(failed[0].reason).toMatch(/is the running milter listener's on 127\.0\.0\.1; with several workers that move needs a restart/);
    await serveOne(port);
    expect(await stop(d)).toBe(0);
  });

  it('refuses a reload that moves the milter listener to the wildcard address on its port, and the workers keep serving it', async () => {
    const port = await freePort();
    const { d, file } = await cluster(port);
    await reloadWith(d, file, [milterAt(port, { address: '0.0.0.0' })]);
    expect(d.lines.filter((l) => l.msg === 'reload failed, keeping the running configuration')).toHaveLength(2);
    await serveOne(port);
    expect(await stop(d)).toBe(0);
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
    await serveOne(port);
    expect(await stop(d)).toBe(0);
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
    await serveOne(moved);
    await d.waitFor((l) => l.msg === 'milter socket closed' && l.port === port, 2000);
    expect(listening(port)).toBeUndefined();
    await expect(MilterClient.connect(port)).rejects.toThrow(/ECONNREFUSED/);
    expect(await stop(d)).toBe(0);
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
    await serveOne(port);
    expect(await stop(d)).toBe(0);
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
    expect(await stop(d)).toBe(0);
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
    expect(await stop(d)).toBe(0);
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
      await serveOne(port);
    }
    expect(await stop(d)).toBe(0);
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
      await serveOne(port);
    }
    expect(await stop(d)).toBe(0);
    await new Promise((resolve) => taken.close(resolve));
  });
});
