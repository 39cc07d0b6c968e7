/**
 * `npm run bench -- --srs`: SRS map lookups per second, forward and reverse, at concurrency 1,
 * 16 and 64, against postseal's SRS service (one process: --workers 1) and, in the same run,
 * Debian's postsrsd 1.10 (C, libsrs2), both with the same secret and domain, so both make the
 * same addresses and the reverse keys are valid for both.
 *
 * The client is this process: C connections, each with one request outstanding at a time, as
 * Postfix's table clients use a map. tcp_table for both (postsrsd speaks nothing else), and
 * postseal's socketmap besides. Each figure is lookups answered in `seconds`, and the server's
 * CPU time (user + system, all its processes) per lookup, so the client's own CPU, which
 * shares the machine, is not counted against either. Every reply is checked (200 / OK with an
 * SRS address); a wrong one fails the run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { NODE, ROOT } from './postseal';
import { readFileSync } from 'node:fs';
import { freePort, processTree } from './proc';

const DOMAIN = 'fwd.bench.example';
const SECRET = 'bench-srs-secret-0123';

export interface SrsCell {
  server: 'postseal' | 'postsrsd';
  protocol: 'tcp_table' | 'socketmap';
  map: 'forward' | 'reverse';
  concurrency: number;
  lookupsPerSecond: number;
  serverCpuUsPerLookup: number;
}

interface Server {
  pid: number;
  ports: { tcpForward: number; tcpReverse: number; socketmap?: number };
  stop(): Promise<void>;
}

export async function srsBenchmark(opts: { dir: string; seconds: number; concurrencies: number[]; log: (l: string) => void }): Promise<SrsCell[]> {
  const secrets = path.join(opts.dir, 'srs-secrets');
  writeFileSync(secrets, `${SECRET}\n`);
  chmodSync(secrets, 0o600);
  const senders = Array.from({ length: 1000 }, (_, i) => `user${i}@orig${i % 97}.example`);
  const cells: SrsCell[] = [];
  for (const start of [startPostseal, startPostsrsd]) {
    const server = await start(opts.dir, secrets);
    try {
      // The reverse keys: this server's own forward answers (valid SRS0 addresses).
      const reverseKeys = await lookups(server.ports.tcpForward, 'tcp_table', 'forward', senders);
      const name = start === startPostseal ? 'postseal' : 'postsrsd';
      // Warm-up, not timed: JIT compilation for postseal, the same second of load for postsrsd.
      await load(server.ports.tcpForward, 'tcp_table', 'forward', senders, 16, 1);
      const targets: [SrsCell['protocol'], SrsCell['map'], number, string[]][] = [
        ['tcp_table', 'forward', server.ports.tcpForward, senders],
        ['tcp_table', 'reverse', server.ports.tcpReverse, reverseKeys],
      ];
      if (server.ports.socketmap) targets.push(['socketmap', 'forward', server.ports.socketmap, senders], ['socketmap', 'reverse', server.ports.socketmap, reverseKeys]);
      for (const [protocol, map, port, keys] of targets) {
        for (const c of opts.concurrencies) {
          const cpu0 = serverCpuSeconds(server.pid);
          const n = await load(port, protocol, map, keys, c, opts.seconds);
          // postsrsd serves each connection in a child it forks: let them exit and be reaped.
          await new Promise((r) => setTimeout(r, 300));
          const cpu = serverCpuSeconds(server.pid) - cpu0;
          const cell: SrsCell = { server: name, protocol, map, concurrency: c, lookupsPerSecond: Math.round(n / opts.seconds), serverCpuUsPerLookup: Math.round((cpu * 1e6) / n) };
          opts.log(`srs ${name} ${protocol} ${map} c=${c}: ${cell.lookupsPerSecond}/s, ${cell.serverCpuUsPerLookup} us CPU per lookup`);
          cells.push(cell);
        }
      }
    } finally {
      await server.stop();
    }
  }
  return cells;
}

export function srsMarkdown(cells: readonly SrsCell[]): string {
  const rows = cells.map((c) => `| ${c.server} | ${c.protocol} | ${c.map} | ${c.concurrency} | ${c.lookupsPerSecond} | ${c.serverCpuUsPerLookup} |`);
  return ['| server | protocol | map | concurrency | lookups/s | server CPU µs/lookup |', '| --- | --- | --- | --- | --- | --- |', ...rows].join('\n');
}

/** postseal with only the SRS service that matters: one process, a listener on a free port. */
async function startPostseal(dir: string, secretsFile: string): Promise<Server> {
  const ports = { tcpForward: await freePort(), tcpReverse: await freePort(), socketmap: await freePort() };
  const config = path.join(dir, 'postseal-srs.yaml');
  const srs = { enabled: true, domain: DOMAIN, secretsFile, socketmapPort: ports.socketmap, tcpForwardPort: ports.tcpForward, tcpReversePort: ports.tcpReverse };
  writeFileSync(config, JSON.stringify({ bankDir: '', listeners: [{ port: 0, bank: 'default' }], log: { level: 'warn' }, services: { srs } }));
  const child = spawn(NODE, [path.join(ROOT, 'dist/cli/main.js'), 'start', '--config', config, '--workers', '1'], { stdio: ['ignore', 'ignore', 'pipe'] });
  return await running(child, ports, 'postseal');
}

async function startPostsrsd(dir: string, secretsFile: string): Promise<Server> {
  const ports = { tcpForward: await freePort(), tcpReverse: await freePort() };
  const args = ['-s', secretsFile, '-d', DOMAIN, '-l', '127.0.0.1', '-4', '-f', String(ports.tcpForward), '-r', String(ports.tcpReverse)];
  if (process.getuid?.() === 0) args.push('-u', 'nobody');
  void dir;
  const child = spawn('/usr/sbin/postsrsd', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  return await running(child, ports, 'postsrsd');
}

async function running(child: ChildProcess, ports: Server['ports'], name: string): Promise<Server> {
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const deadline = Date.now() + 15000;
  while (!(await canConnect(ports.tcpForward))) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`${name} did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    pid: child.pid!,
    ports,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * CPU seconds of the server: its own, its reaped children's (cutime, cstime: postsrsd forks a
 * child per connection) and its live children's.
 */
function serverCpuSeconds(pid: number): number {
  let ticks = 0;
  for (const p of processTree(pid)) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]) + (p === pid ? Number(f[13]) + Number(f[14]) : 0);
    } catch {
      // Gone while we looked.
    }
  }
  return ticks / 100;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => resolve(!!s.destroy()));
    s.once('error', () => resolve(false));
  });
}

/** One connection, the keys in turn; the answers (checked). */
async function lookups(port: number, protocol: SrsCell['protocol'], map: SrsCell['map'], keys: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  await drive(port, protocol, map, keys, 1, Number.POSITIVE_INFINITY, keys.length, (v) => out.push(v));
  return out;
}

/** C connections asking in a closed loop for `seconds`; the number of answers. */
async function load(port: number, protocol: SrsCell['protocol'], map: SrsCell['map'], keys: readonly string[], c: number, seconds: number): Promise<number> {
  return drive(port, protocol, map, keys, c, Date.now() + seconds * 1000, Number.POSITIVE_INFINITY, () => undefined);
}

function drive(
  port: number,
  protocol: SrsCell['protocol'],
  map: SrsCell['map'],
  keys: readonly string[],
  c: number,
  until: number,
  max: number,
  answer: (v: string) => void,
): Promise<number> {
  let done = 0;
  let next = 0;
  const request = (k: string) => (protocol === 'tcp_table' ? `get ${k}\n` : `${Buffer.byteLength(`${map} ${k}`)}:${map} ${k},`);
  const one = () =>
    new Promise<void>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1');
      s.setNoDelay(true);
      let buf = '';
      const send = () => {
        if (Date.now() >= until || next >= max) {
          s.destroy();
          return resolve();
        }
        s.write(request(keys[next++ % keys.length]!));
      };
      s.on('connect', send);
      s.on('data', (d) => {
        buf += d.toString('latin1');
        const reply = parse(buf, protocol);
        if (!reply) return;
        buf = buf.slice(reply.length);
        if (!/^(200|OK) SRS0=/.test(reply.value) && !(map === 'reverse' && /^(200|OK) user\d+@/.test(reply.value)))
          return reject(new Error(`unexpected SRS reply on ${port}: ${reply.value}`));
        done++;
        answer(reply.value.replace(/^(200|OK) /, ''));
        send();
      });
      s.on('error', reject);
    });
  return Promise.all(Array.from({ length: c }, one)).then(() => done);
}

function parse(buf: string, protocol: SrsCell['protocol']): { value: string; length: number } | undefined {
  if (protocol === 'tcp_table') {
    const nl = buf.indexOf('\n');
    return nl < 0 ? undefined : { value: buf.slice(0, nl), length: nl + 1 };
  }
  const colon = buf.indexOf(':');
  if (colon < 0) return undefined;
  const len = Number(buf.slice(0, colon));
  return buf.length < colon + len + 2 ? undefined : { value: buf.slice(colon + 1, colon + 1 + len), length: colon + len + 2 };
}
