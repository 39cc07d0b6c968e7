import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { workerV8Flags } from '../../src/cluster/primary';
import { startDaemon, type Daemon } from '../helpers/cli';
import { startSink } from '../helpers/sink';
import { TestClient } from '../helpers/smtp-client';

const msg = 'From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n';
type DaemonOptions = Parameters<typeof startDaemon>[1];

/** Every daemon a test started: killed after it, so a failed expectation leaves none running. */
const started: Daemon[] = [];
afterEach(() => {
  for (const d of started.splice(0)) if (d.proc.exitCode === null && d.proc.signalCode === null) d.proc.kill('SIGKILL');
});

async function configured(workers: number, port = 0, extra = '') {
  const sink = await startSink();
  const dir = mkdtempSync(path.join(tmpdir(), 'postseal-cluster-'));
  mkdirSync(path.join(dir, 'banks'));
  writeFileSync(path.join(dir, 'banks', 'default.yaml'), `forward: { host: 127.0.0.1, port: ${sink.port} }\n`);
  writeFileSync(path.join(dir, 'postseal.yaml'), `bankDir: banks\nlisteners:\n  - { port: ${port}, bank: default }\nworkers: ${workers}\nshutdownGraceMs: 2000\n${extra}`);
  return { sink, configFile: path.join(dir, 'postseal.yaml') };
}

function daemon(configFile: string, opts: DaemonOptions = {}): Daemon {
  const d = startDaemon(configFile, opts);
  started.push(d);
  return d;
}

async function cluster(workers: number, opts: DaemonOptions = {}, extra = '') {
  const { sink, configFile } = await configured(workers, 0, extra);
  const d = daemon(configFile, opts);
  await d.waitFor((l) => l.msg === 'postseal started');
  // Each worker writes its own log lines in blocks (src/lib/log.ts): they can come after the primary's.
  const port = (await d.waitFor((l) => l.msg === 'listening')).port as number;
  return { sink, d, port };
}

/** The ids of the workers that logged 'worker started', once `count` of them have. */
async function startedWorkers(d: Awaited<ReturnType<typeof cluster>>['d'], count: number): Promise<Set<unknown>> {
  const ids = () => new Set(d.lines.filter((l) => l.msg === 'worker started').map((l) => l.worker));
  await d.waitFor(() => ids().size >= count);
  return ids();
}

async function send(port: number): Promise<number | undefined> {
  const c = await TestClient.connect(port);
  const r = await c.send({ from: 'a@example.org', to: ['b@example.net'], data: msg });
  await c.quit();
  return r.final?.code;
}

describe('postseal start with several workers', () => {
  it('serves one listener from every worker and drains all of them on SIGTERM', async () => {
    const { sink, d, port } = await cluster(2);
    expect((await startedWorkers(d, 2)).size).toBe(2);
    for (let i = 0; i < 6; i++) expect(await send(port)).toBe(250);
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
    // 'exit' can come before the last lines of output are read.
    await d.waitFor(() => d.lines.filter((l) => l.msg === 'stopped').length === 2, 2000);
    expect(sink.received).toHaveLength(6);
    await sink.close();
  });

  // NODE_OPTIONS is set in each case, so the test's own environment cannot change the outcome.
  it.each<[string, DaemonOptions, string[]]>([
    ['with the young generation of workerSemiSpaceMb (default 8)', { env: { NODE_OPTIONS: '' } }, workerV8Flags(8)],
    ['with the operator’s own semi-space size from its command line', { nodeArgs: ['--max-semi-space-size=16'], env: { NODE_OPTIONS: '' } }, ['--max-semi-space-size=16']],
    // node applies NODE_OPTIONS itself; a flag on the command line would override it.
    ['without a flag of its own when NODE_OPTIONS sets the size', { env: { NODE_OPTIONS: '--max-semi-space-size=16' } }, []],
  ])('starts its workers %s', async (_what, opts, expected) => {
    const argv = (pid: unknown) => readFileSync(`/proc/${String(pid)}/cmdline`, 'utf8').split('\0');
    const { sink, d } = await cluster(2, opts);
    await startedWorkers(d, 2);
    for (const l of d.lines.filter((x) => x.msg === 'worker started')) {
      expect(argv(l.pid).filter((a) => /semi-space-size/.test(a))).toEqual(expected);
    }
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
    await sink.close();
  });

  it('gives its workers the semi-space size of workerSemiSpaceMb', async () => {
    const { sink, d } = await cluster(2, { env: { NODE_OPTIONS: '' } }, 'workerSemiSpaceMb: 16\n');
    await startedWorkers(d, 2);
    for (const l of d.lines.filter((x) => x.msg === 'worker started')) {
      expect(readFileSync(`/proc/${String(l.pid)}/cmdline`, 'utf8').split('\0')).toContain('--max-semi-space-size=16');
    }
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
    await sink.close();
  });

  it.each<[string, DaemonOptions, string, string[]]>([
    ['of workerInitialOldSpaceMb (default 128)', { env: { NODE_OPTIONS: '' } }, '', ['--initial-old-space-size=128']],
    ['of workerInitialOldSpaceMb: 256', { env: { NODE_OPTIONS: '' } }, 'workerInitialOldSpaceMb: 256\n', ['--initial-old-space-size=256']],
    ["of node's own with workerInitialOldSpaceMb: 0", { env: { NODE_OPTIONS: '' } }, 'workerInitialOldSpaceMb: 0\n', []],
    ['from the operator’s own command line', { nodeArgs: ['--initial-old-space-size=64'], env: { NODE_OPTIONS: '' } }, '', ['--initial-old-space-size=64']],
    // V8 would raise the operator's maximum to a larger initial size.
    [
      'no larger than the operator’s --max-old-space-size on the command line',
      { nodeArgs: ['--max-old-space-size=96'], env: { NODE_OPTIONS: '' } },
      '',
      ['--max-old-space-size=96', '--initial-old-space-size=96'],
    ],
    ['no larger than the --max-old-space-size of NODE_OPTIONS', { env: { NODE_OPTIONS: '--max-old-space-size=100' } }, '', ['--initial-old-space-size=100']],
  ])('starts its workers with the initial old space %s', async (_what, opts, yaml, expected) => {
    const { sink, d } = await cluster(2, opts, yaml);
    await startedWorkers(d, 2);
    for (const l of d.lines.filter((x) => x.msg === 'worker started')) {
      expect(
        readFileSync(`/proc/${String(l.pid)}/cmdline`, 'utf8')
          .split('\0')
          .filter((a) => /old-space-size/.test(a)),
      ).toEqual(expected);
    }
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
    await sink.close();
  });

  it("gives back the primary's start-up memory before it says postseal started, and leaves the workers' young generation as it is", async () => {
    const { sink, d } = await cluster(2, {}, 'log: { level: debug }\n');
    await startedWorkers(d, 2);
    const released = d.lines.filter((x) => x.msg === 'start-up memory released');
    // Only the primary's line (no worker number), before "postseal started".
    expect(released.map((l) => l.worker)).toEqual([undefined]);
    expect(d.lines.indexOf(released[0])).toBeLessThan(d.lines.findIndex((l) => l.msg === 'postseal started'));
    const [before, after] = released[0].youngMb as number[];
    expect(after).toBeLessThan(before);
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
    await sink.close();
  });

  it('replaces a worker that dies, and keeps serving meanwhile', async () => {
    const { sink, d, port } = await cluster(2);
    const first = await d.waitFor((l) => l.msg === 'worker started');
    process.kill(first.pid as number, 'SIGKILL');
    await d.waitFor((l) => l.msg === 'worker ended, replacing it');
    expect(await send(port)).toBe(250);
    await d.waitFor((l) => l.msg === 'worker started' && l.pid !== first.pid && l.worker === 3);
    expect(await send(port)).toBe(250);
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
    await sink.close();
  });

  it('replaces every worker when all die at once, instead of exiting with nothing left to wait for', async () => {
    // A fixed port: Node's round robin closes the socket with its last worker, and port 0 would then be a new one.
    const free = net.createServer();
    await new Promise<void>((resolve) => free.listen(0, '127.0.0.1', resolve));
    const port = (free.address() as net.AddressInfo).port;
    await new Promise((resolve) => free.close(resolve));
    const { sink, configFile } = await configured(2, port);
    const d = daemon(configFile);
    await d.waitFor((l) => l.msg === 'postseal started');
    const first = await startedWorkers(d, 2);
    for (const l of d.lines.filter((x) => x.msg === 'worker started')) process.kill(l.pid as number, 'SIGKILL');
    await d.waitFor(() => d.lines.filter((l) => l.msg === 'worker started' && !first.has(l.worker)).length === 2);
    expect(d.proc.exitCode).toBeNull();
    expect(await send(port)).toBe(250);
    d.proc.kill('SIGTERM');
    expect(await d.exited).toBe(0);
    await sink.close();
  });

  it('exits 1 when a worker cannot start (its port is taken)', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const { sink, configFile } = await configured(2, (taken.address() as net.AddressInfo).port);
    const d = daemon(configFile);
    expect(await d.exited).toBe(1);
    // The exit can come before the last lines of output are read.
    await d.waitFor((l) => l.msg === 'worker failed to start, stopping', 2000);
    taken.close();
    await sink.close();
  });

  it('exits 1 when a worker cannot load the message path, instead of hanging on the channel to the primary', async () => {
    const { sink, configFile } = await configured(2);
    const d = daemon(configFile, { nodeArgs: ['--require', path.resolve(__dirname, '../fixtures/scripts/fail-message-path.js')] });
    expect(await d.exited).toBe(1);
    await d.waitFor((l) => l.msg === 'worker failed to start, stopping', 2000);
    await sink.close();
  });
});
