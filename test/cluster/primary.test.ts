import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startDaemon } from '../helpers/cli';
import { startSink } from '../helpers/sink';
import { TestClient } from '../helpers/smtp-client';

const msg = 'From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n';

async function cluster(workers: number, opts: Parameters<typeof startDaemon>[1] = {}) {
  const sink = await startSink();
  const dir = mkdtempSync(path.join(tmpdir(), 'postseal-cluster-'));
  mkdirSync(path.join(dir, 'banks'));
  writeFileSync(path.join(dir, 'banks', 'default.yaml'), `forward: { host: 127.0.0.1, port: ${sink.port} }\n`);
  writeFileSync(path.join(dir, 'postseal.yaml'), `bankDir: banks\nlisteners:\n  - { port: 0, bank: default }\nworkers: ${workers}\nshutdownGraceMs: 2000\n`);
  const d = startDaemon(path.join(dir, 'postseal.yaml'), opts);
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

  it('starts its workers with the young generation capped (the operator’s own flag wins)', async () => {
    const argv = (pid: unknown) => readFileSync(`/proc/${String(pid)}/cmdline`, 'utf8').split('\0');
    const cases: [Parameters<typeof startDaemon>[1], string[]][] = [
      [{}, ['--max-semi-space-size=8']],
      [{ nodeArgs: ['--max-semi-space-size=16'] }, ['--max-semi-space-size=16']],
      // From NODE_OPTIONS node applies it itself; the command line must not override it.
      [{ env: { NODE_OPTIONS: '--max-semi-space-size=16' } }, []],
    ];
    for (const [opts, expected] of cases) {
      const { sink, d } = await cluster(2, opts);
      try {
        await startedWorkers(d, 2);
        for (const l of d.lines.filter((x) => x.msg === 'worker started')) {
          expect(argv(l.pid).filter((a) => a.startsWith('--max-semi-space-size'))).toEqual(expected);
        }
      } finally {
        d.proc.kill('SIGTERM');
        expect(await d.exited).toBe(0);
        await sink.close();
      }
    }
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

  it('exits 1 when a worker cannot start (its port is taken)', async () => {
    const sink = await startSink();
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const dir = mkdtempSync(path.join(tmpdir(), 'postseal-cluster-'));
    mkdirSync(path.join(dir, 'banks'));
    writeFileSync(path.join(dir, 'banks', 'default.yaml'), `forward: { host: 127.0.0.1, port: ${sink.port} }\n`);
    writeFileSync(path.join(dir, 'postseal.yaml'), `bankDir: banks\nlisteners:\n  - { port: ${(taken.address() as net.AddressInfo).port}, bank: default }\nworkers: 2\n`);
    const d = startDaemon(path.join(dir, 'postseal.yaml'));
    expect(await d.exited).toBe(1);
    // The exit can come before the last lines of output are read.
    await d.waitFor((l) => l.msg === 'worker failed to start, stopping', 2000);
    taken.close();
    await sink.close();
  });
});
