/**
 * The policy service's cell (bench/README.md, "Policy service"): requests per second and
 * latency of Postfix policy requests (SMTPD_POLICY_README) at concurrency 1, 16 and 64, against
 * postseal's policy service (one process, sqlite and Redis stores) and, in the same run, the
 * daemons it replaces: postgrey (greylisting) and postfix-policyd-spf-python (SPF), Debian's.
 *
 * Load: `c` connections, each a closed loop of request -> answer for `seconds` (the rate), then
 * the same connections paced at half that rate (the latency: p50/p99 of each request's round
 * trip). Greylisting requests cycle over 5,000 triplets (new, then known: both write, as
 * postgrey does); SPF requests are a new message each (a new `instance`) from a sender whose
 * SPF passes. policyd-spf runs as Postfix's spawn(8) runs it: one process per connection.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chownSync, closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { NODE, ROOT } from './postseal';
import { freePort } from './proc';

export interface PolicyCell {
  target: string;
  workload: 'greylist' | 'spf';
  concurrency: number;
  requestsPerSecond: number;
  /** At half the measured rate. */
  p50Ms: number;
  p99Ms: number;
}

export interface PolicyBenchOptions {
  dir: string;
  dnsPort: number;
  /** A domain whose SPF passes for 192.0.2.10 in the bench DNS zone. */
  spfDomain: string;
  concurrencies: readonly number[];
  seconds: number;
  log: (line: string) => void;
}

/** The TXT records the bench DNS server must hold for the SPF workload. */
export const POLICY_DNS: ReadonlyMap<string, readonly string[]> = new Map([['policy.bench.example', ['v=spf1 ip4:192.0.2.0/24 -all']]]);

type Stream = { write(text: string): void; next(): Promise<string>; close(): void };

function reader(onData: (cb: (d: Buffer) => void) => void): () => Promise<string> {
  const ready: string[] = [];
  const waiting: ((answer: string) => void)[] = [];
  let tail = '';
  onData((d) => {
    const parts = (tail + d.toString('latin1')).split('\n\n');
    tail = parts.pop() ?? '';
    ready.push(...parts);
    while (ready.length && waiting.length) (waiting.shift() as (a: string) => void)(ready.shift() as string);
  });
  return () => new Promise((resolve) => (ready.length ? resolve(ready.shift() as string) : waiting.push(resolve)));
}

/** What the first request of a workload must be answered with: a target that answers otherwise is not doing the work. */
const EXPECTED: Record<'greylist' | 'spf', RegExp> = {
  greylist: /^action=DEFER_IF_PERMIT /,
  spf: /^action=prepend Received-SPF: pass /i,
};

function tcpStream(port: number): Promise<Stream> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => resolve({ write: (t) => s.write(t), next: reader((cb) => s.on('data', cb)), close: () => s.destroy() }));
    s.once('error', reject);
  });
}

function request(workload: 'greylist' | 'spf', i: number, spfDomain: string): string {
  const attrs = {
    request: 'smtpd_access_policy',
    protocol_state: 'RCPT',
    client_address: workload === 'spf' ? '192.0.2.10' : `10.${(i >> 8) & 255}.${i & 255}.9`,
    client_name: 'mail.sender.example',
    helo_name: 'mail.sender.example',
    sender: workload === 'spf' ? `alice@${spfDomain}` : 'alice@sender.example',
    recipient: `user${i % 5000}@rcpt.example`,
    instance: `b${i}`,
  };
  return `${Object.entries(attrs)
    .map(([k, v]) => `${k}=${v}\n`)
    .join('')}\n`;
}

/** Request number across runs: each request is a new message (instance) to every target. */
let sequence = 0;

/** Every answer of the timed runs: anything else means the target is not doing the work. */
const ALLOWED: Record<'greylist' | 'spf', RegExp> = {
  greylist: /^action=(DEFER_IF_PERMIT|PREPEND X-Greylist|DUNNO)/,
  spf: /^action=prepend Received-SPF: pass /i,
};

async function load(streams: Stream[], make: (i: number) => string, allowed: RegExp, seconds: number, intervalMs?: number): Promise<{ count: number; latencies: number[] }> {
  const latencies: number[] = [];
  const end = performance.now() + seconds * 1000;
  await Promise.all(
    streams.map(async (s, k) => {
      let due = performance.now() + (intervalMs ? (intervalMs * k) / streams.length : 0);
      while (performance.now() < end) {
        if (intervalMs) {
          const wait = due - performance.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          due += intervalMs;
        }
        const t = performance.now();
        s.write(make(sequence++));
        const answer = await s.next();
        latencies.push(performance.now() - t);
        if (!allowed.test(answer)) throw new Error(`unexpected answer "${answer}"`);
      }
    }),
  );
  return { count: latencies.length, latencies };
}

function percentile(sorted: number[], p: number): number {
  return sorted.length ? Math.round(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] * 100) / 100 : 0;
}

async function measure(target: string, workload: 'greylist' | 'spf', open: () => Promise<Stream>, c: number, opts: PolicyBenchOptions): Promise<PolicyCell> {
  const streams = await Promise.all(Array.from({ length: c }, open));
  try {
    const make = (i: number) => request(workload, i, opts.spfDomain);
    streams[0].write(request(workload, 1_000_000 + c, opts.spfDomain));
    const first = await streams[0].next();
    if (!EXPECTED[workload].test(first)) throw new Error(`${target} answered the first ${workload} request with "${first}", not ${EXPECTED[workload]}`);
    await load(streams, make, ALLOWED[workload], 0.2);
    const full = await load(streams, make, ALLOWED[workload], opts.seconds);
    const rate = full.count / opts.seconds;
    // Half load: each connection sends every c / (rate / 2) seconds.
    const paced = await load(streams, make, ALLOWED[workload], Math.max(0.5, opts.seconds * 0.6), (c / (rate / 2)) * 1000);
    const sorted = paced.latencies.sort((a, b) => a - b);
    const cell = { target, workload, concurrency: c, requestsPerSecond: Math.round(rate), p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99) };
    opts.log(`policy ${target} ${workload} c=${c}: ${cell.requestsPerSecond} req/s, p99 ${cell.p99Ms} ms at half load`);
    return cell;
  } finally {
    for (const s of streams) s.close();
  }
}

async function waitPort(port: number, child: ChildProcess, what: string): Promise<void> {
  const end = Date.now() + 30000;
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (up) return;
    if (child.exitCode !== null || Date.now() > end) throw new Error(`${what} did not start`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** SIGTERM, then SIGKILL after 5 s: postgrey once kept running after SIGTERM and held the whole run. */
async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await gone;
  clearTimeout(timer);
}

async function postsealPolicy(opts: PolicyBenchOptions, store: string, workload: 'greylist' | 'spf'): Promise<{ port: number; child: ChildProcess }> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(opts.dir, 'policy-'));
  // An SMTP listener is required by the schema; no mail is sent to it.
  const config = [
    'hostname: filter.bench.example',
    'bankDir: ""',
    `listeners: [{ address: 127.0.0.1, port: ${await freePort()}, bank: NOCHECKS }]`,
    `spool: { dir: ${JSON.stringify(dir)} }`,
    `dns: { servers: ["127.0.0.1:${opts.dnsPort}"] }`,
    `store: ${store}`,
    'log: { level: warn }',
    // One check at a time, as each reference does only one.
    `services: { policy: { enabled: true, port: ${port}, greylist: { enabled: ${workload === 'greylist'} }, spf: { enabled: ${workload === 'spf'} } } }`,
  ];
  writeFileSync(path.join(dir, 'postseal.yaml'), `${config.join('\n')}\n`);
  const out = openSync(path.join(dir, 'postseal.log'), 'a');
  const child = spawn(NODE, [path.join(ROOT, 'dist/cli/main.js'), 'start', '--config', path.join(dir, 'postseal.yaml'), '--workers', '1'], {
    stdio: ['ignore', out, out],
    cwd: dir,
  });
  closeSync(out);
  await waitPort(port, child, `postseal (log: ${path.join(dir, 'postseal.log')})`);
  return { port, child };
}

/** Every cell; a reference that is not installed is skipped with a log line, never faked. */
export async function policyBenchmark(opts: PolicyBenchOptions): Promise<{ cells: PolicyCell[]; skipped: string[] }> {
  const cells: PolicyCell[] = [];
  const skipped: string[] = [];
  const redisPort = await freePort();
  const redis = existsSync('/usr/bin/redis-server')
    ? spawn('/usr/bin/redis-server', ['--save', '', '--appendonly', 'no', '--port', String(redisPort), '--bind', '127.0.0.1'], { stdio: 'ignore' })
    : undefined;
  if (!redis) skipped.push('postseal with Redis: redis-server is not installed');
  const stores: [string, string][] = [['sqlite', '{ backend: sqlite, sqlite: { file: policy.db } }']];
  if (redis) {
    await waitPort(redisPort, redis, 'redis-server');
    stores.push(['redis', `{ backend: redis, redis: { url: "redis://127.0.0.1:${redisPort}/0" } }`]);
  }
  try {
    for (const [name, store] of stores) {
      const ps = await postsealPolicy(opts, store, 'greylist');
      try {
        for (const c of opts.concurrencies) cells.push(await measure(`postseal (${name})`, 'greylist', () => tcpStream(ps.port), c, opts));
      } finally {
        await stop(ps.child);
      }
    }
    // SPF does not touch the store: measured once, with sqlite.
    const ps = await postsealPolicy(opts, stores[0][1], 'spf');
    try {
      for (const c of opts.concurrencies) cells.push(await measure('postseal', 'spf', () => tcpStream(ps.port), c, opts));
    } finally {
      await stop(ps.child);
    }
    if (existsSync('/usr/sbin/postgrey') && process.getuid?.() === 0) {
      const port = await freePort();
      // Not under the work folder (mode 0700, root's): postgrey drops to its own user.
      const dbdir = mkdtempSync(path.join(os.tmpdir(), 'postseal-bench-postgrey-'));
      const uid = Number(/^postgrey:[^:]*:(\d+):/m.exec(readFileSync('/etc/passwd', 'utf8'))?.[1]);
      chownSync(dbdir, uid, -1);
      const pg = spawn('/usr/sbin/postgrey', [`--inet=127.0.0.1:${port}`, `--dbdir=${dbdir}`], { stdio: 'ignore' });
      try {
        await waitPort(port, pg, 'postgrey');
        for (const c of opts.concurrencies) cells.push(await measure('postgrey', 'greylist', () => tcpStream(port), c, opts));
      } finally {
        await stop(pg);
        rmSync(dbdir, { recursive: true, force: true });
      }
    } else skipped.push('postgrey: not installed (Debian package postgrey) or not running as root');
    if (existsSync('/usr/bin/policyd-spf')) {
      for (const c of opts.concurrencies) cells.push(await measure('policyd-spf', 'spf', () => Promise.resolve(policydSpf(opts.dnsPort)), c, opts));
    } else skipped.push('policyd-spf: not installed (Debian package postfix-policyd-spf-python)');
  } finally {
    if (redis) await stop(redis);
  }
  return { cells, skipped };
}

/** One policyd-spf process on stdin/stdout, as spawn(8) runs it per connection; DNS from the bench server. */
function policydSpf(dnsPort: number): Stream {
  const wrapper = [
    'import sys, syslog, dns.resolver',
    'syslog.syslog = lambda *a: None',
    'r = dns.resolver.Resolver(configure=False)',
    "r.nameservers = ['127.0.0.1']",
    `r.port = ${dnsPort}`,
    'dns.resolver.default_resolver = r',
    'from spf_engine.policyd_spf import main',
    'main()',
  ].join('\n');
  const child = spawn('/usr/bin/python3', ['-c', wrapper, '/etc/postfix-policyd-spf-python/policyd-spf.conf'], { stdio: ['pipe', 'pipe', 'ignore'] });
  return { write: (t) => child.stdin.write(t), next: reader((cb) => child.stdout.on('data', cb)), close: () => child.kill('SIGKILL') };
}

export function policyMarkdown(cells: readonly PolicyCell[]): string {
  const rows = cells.map((c) => `| ${c.workload} | ${c.target} | ${c.concurrency} | ${c.requestsPerSecond} | ${c.p50Ms} | ${c.p99Ms} |`);
  return ['| workload | target | c | requests/s | p50 ms (half load) | p99 ms (half load) |', '| --- | --- | --- | --- | --- | --- |', ...rows].join('\n');
}
