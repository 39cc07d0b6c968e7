/**
 * Many milter connections at once against a cluster whose workers are full or stuck
 * (src/cluster/handoff.ts), as an attacker who can open connections would send them: every
 * connection is closed with a log line, and neither the primary nor a worker keeps more
 * descriptors for them than a worker could serve (counted in /proc/PID/fd).
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import YAML from 'yaml';
import { MilterClient } from '../helpers/milter-client';
import path from 'node:path';
import { startDaemon } from '../helpers/cli';
import { blockLoop, cluster, configFile, freePort, milterAt, offer, started, stop, stopStarted, workerPids, outcomes } from '../helpers/milter-cluster';

jest.setTimeout(120_000);
afterEach(stopStarted);

const fds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;
const refusals = (lines: Record<string, unknown>[]) => lines.filter((l) => l.msg === 'milter connection refused').length;

/** `n` connections at once; resolves with them once all are open. */
async function flood(port: number, n: number): Promise<MilterClient[]> {
  return Promise.all(Array.from({ length: n }, () => MilterClient.connect(port)));
}

async function until(pred: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('a flood of milter connections while every worker is at its maxConnections', () => {
  it('closes each one at once with a log line: neither the primary nor a worker queues them, and no descriptor is left open', async () => {
    const port = await freePort();
    const { d, workers } = await cluster(port, {}, [milterAt(port, { maxConnections: 1 })]);
    const held = await Promise.all(Array.from({ length: 2 }, () => offer(port)));
    await Promise.all(held.map((o) => o.served));
    const pids = [d.proc.pid!, ...workers];
    const before = pids.map(fds);
    const peak = [...before];
    const sample = setInterval(() => {
      for (const [i, pid] of pids.entries()) peak[i] = Math.max(peak[i], fds(pid));
    }, 2);
    // Faster than the primary acknowledges hand-offs: without a bound a worker held up to ~240 of them at once.
    const n = 1000;
    const clients = await flood(port, n);
    await until(() => clients.every((c) => c.closed));
    clearInterval(sample);
    // A worker holds at most maxConnections (1) on their way to the primary, the primary none (each closed as it arrives).
    for (const [i, p] of peak.entries()) expect(p - before[i]).toBeLessThanOrEqual(5);
    await d.waitFor(() => refusals(d.lines) >= n, 10_000);
    expect(refusals(d.lines)).toBe(n);
    // None left open: as many as before or fewer (a descriptor of the process's own, such as a
    // log write or a DNS socket open when `before` was read, may have closed since; seen in CI).
    await until(() => pids.map(fds).every((f, i) => f <= before[i]), 5000).catch(() => undefined);
    for (const [i, f] of pids.map(fds).entries()) expect([i, f <= before[i]]).toEqual([i, true]);
    for (const o of held) o.client.close();
    expect(await stop(d)).toBe(0);
  });
});

describe('a flood of milter connections while the only worker with room is stuck', () => {
  // A worker whose event loop is stuck (SIGSTOP here) has said nothing about being full:
  // connections handed to it queue in the primary's channel, one descriptor each, until it runs.
  it('hands it no more than its maxConnections: the rest are refused at once, and the primary holds no more descriptors than that', async () => {
    const port = await freePort();
    const max = 5;
    const { d, workers } = await cluster(port, {}, [milterAt(port, { maxConnections: max })]);
    const primary = d.proc.pid!;
    process.kill(workers[1], 'SIGSTOP');
    const held = await Promise.all(Array.from({ length: max }, () => offer(port)));
    await Promise.all(held.map((o) => o.served));
    const before = fds(primary);
    const n = 100;
    const clients = await flood(port, n);
    // All but those the stuck worker could take are refused without waiting for it.
    await until(() => clients.filter((c) => c.closed).length >= n - max);
    await d.waitFor(() => refusals(d.lines) >= n - max, 10_000);
    expect(fds(primary) - before).toBeLessThanOrEqual(max);
    process.kill(workers[1], 'SIGCONT');
    for (const c of clients) c.close();
    for (const o of held) o.client.close();
    expect(await stop(d)).toBe(0);
  });
});

describe('SIGTERM while milter connections are on their way to a stopped worker', () => {
  it('leaves none open: each is served or closed, and postseal exits 0', async () => {
    const port = await freePort();
    const { d, workers } = await cluster(port, {}, [milterAt(port, { maxConnections: 1 })]);
    process.kill(workers[1], 'SIGSTOP');
    const first = await offer(port);
    await first.served;
    // The running worker is full: these go to the stopped one, through the primary.
    const handed = await Promise.all(Array.from({ length: 3 }, () => offer(port)));
    const ends = Promise.all(
      handed.map((o) =>
        o.served.then(
          () => o.client.closedByServer(10_000).then(() => 'served, then closed'),
          (err: Error) => err.message,
        ),
      ),
    );
    await new Promise((r) => setTimeout(r, 300));
    d.proc.kill('SIGTERM');
    await d.waitFor((l) => l.msg === 'draining');
    process.kill(workers[1], 'SIGCONT');
    expect(await d.exited).toBe(0);
    for (const end of await ends) expect(end).toMatch(/^served, then closed$|^milter connection closed$/);
    for (const o of [first, ...handed]) o.client.close();
  });
});

describe('milter connections handed on while a process is out of file descriptors', () => {
  // The kernel drops a descriptor its receiver has no room for; Node then emits nothing there
  // and tells the sender only in an internal NODE_HANDLE_NACK. The stopped worker's accept
  // is never tried (its own would meet libuv's EMFILE trick, which closes connections unsaid
  // in any Node server): the running worker, full, hands them on through the primary.
  it.each([
    ['the receiving worker', 'worker'],
    ['the primary', 'primary'],
  ] as const)('are each served or refused with a log line when %s is the one out of them, none closed unsaid', async (_what, who) => {
    const port = await freePort();
    const max = 20;
    const { d, workers } = await cluster(port, {}, [milterAt(port, { maxConnections: max })]);
    process.kill(workers[1], 'SIGSTOP');
    const held = await Promise.all(Array.from({ length: max }, () => offer(port)));
    await Promise.all(held.map((o) => o.served));
    // It may open no further descriptor (beyond free slots below its highest one).
    const pid = who === 'worker' ? workers[1] : d.proc.pid!;
    const open = readdirSync(`/proc/${pid}/fd`).length;
    execFileSync('prlimit', ['--pid', String(pid), `--nofile=${open}:${open}`]);
    const handed = await Promise.all(Array.from({ length: 10 }, () => offer(port)));
    await new Promise((r) => setTimeout(r, 300));
    process.kill(workers[1], 'SIGCONT');
    const ends: string[] = await outcomes(handed);
    const closed = ends.filter((e) => e === 'milter connection closed').length;
    expect(closed).toBeGreaterThan(0);
    await d.waitFor(() => refusals(d.lines) >= closed, 5000);
    expect(refusals(d.lines)).toBe(closed);
    for (const o of [...held, ...handed]) o.client.close();
    expect(await stop(d)).toBe(0);
  });
});

describe('a reload that restarts the milter listener while connections are on their way to it', () => {
  it('serves each of them, or refuses it with a log line', async () => {
    const port = await freePort();
    const { d, file, workers } = await cluster(port, {}, [milterAt(port, { maxConnections: 1 })]);
    process.kill(workers[1], 'SIGSTOP');
    const first = await offer(port);
    await first.served;
    const handed = await Promise.all(Array.from({ length: 3 }, () => offer(port)));
    await new Promise((r) => setTimeout(r, 300));
    // A new maxConnections restarts the listener on the same socket (listener/service.ts).
    const config = YAML.parse(readFileSync(file, 'utf8'));
    config.listeners = [milterAt(port, { maxConnections: 2 })];
    writeFileSync(file, YAML.stringify(config));
    d.proc.kill('SIGHUP');
    process.kill(workers[1], 'SIGCONT');
    const ends: string[] = await outcomes(handed);
    await d.waitFor(() => d.lines.filter((l) => l.msg === 'configuration reloaded').length === 2);
    const closed = ends.filter((e) => e === 'milter connection closed').length;
    await new Promise((r) => setTimeout(r, 300));
    expect(refusals(d.lines)).toBe(closed);
    for (const o of [first, ...handed]) o.client.close();
    expect(await stop(d)).toBe(0);
  });
});

describe('a milter connection handed to another worker that sends nothing', () => {
  it("is closed after the bank's socketIdleTimeoutMs, as one the worker accepted itself", async () => {
    const port = await freePort();
    const file = configFile([milterAt(port, { maxConnections: 1 })]);
    const bank = path.join(path.dirname(file), 'banks', 'default.yaml');
    writeFileSync(bank, YAML.stringify({ ...YAML.parse(readFileSync(bank, 'utf8')), timeouts: { socketIdleTimeoutMs: 1000 } }));
    const d = startDaemon(file, { nodeArgs: ['--require', blockLoop] });
    started.push(d);
    await d.waitFor((l) => l.msg === 'postseal started', 45_000);
    const workers = await workerPids(d, 2);
    process.kill(workers[1], 'SIGSTOP');
    const first = await offer(port);
    await first.served;
    // Silent from the start: accepted by the full worker, handed to the stopped one.
    const silent = await MilterClient.connect(port);
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    process.kill(workers[1], 'SIGCONT');
    await silent.closedByServer(5000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    expect(refusals(d.lines)).toBe(0);
    first.client.close();
    expect(await stop(d)).toBe(0);
  });
});
