/**
 * `node dist/bench/milter-connections.js [--tree DIR] [--sessions N] [--concurrency C] [--workers W]`: what a
 * new milter connection costs a postseal cluster (bench/README.md "One socket for the workers"),
 * without Postfix on the same two cores. The built `postseal start` of DIR (default this
 * checkout; another checkout's for an A/B) runs W workers (default 2) and one milter listener whose bank
 * runs two cheap stages (loop-guard, header-sanity), so the connection's own cost is a large
 * part of the message's. This process plays Postfix: N sessions, C at a time, each a new
 * connection with option negotiation, one 2 KB message and close, as smtpd does per SMTP
 * session. Prints one JSON line: sessions/s, CPU per session of the primary and of the workers
 * (user + system from /proc: the client's own CPU is not counted), and how many messages each
 * worker's log line counted. A reply other than a modification or CONTINUE fails the run.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT } from './postseal';
import { freePort } from './proc';

const { values: opt } = parseArgs({ options: { tree: { type: 'string' }, sessions: { type: 'string' }, concurrency: { type: 'string' }, workers: { type: 'string' } } });
const tree = path.resolve(opt.tree ?? ROOT);
const sessions = Number(opt.sessions ?? 3000);
const concurrency = Number(opt.concurrency ?? 8);
const workerCount = Number(opt.workers ?? 2);
const WARM_UP = 200;

/** One process's user + system seconds, from its own /proc entry (the primary without its workers). */
function cpuOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function packet(code: string, ...parts: (Buffer | string)[]): Buffer {
  const data = Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p)));
  const head = Buffer.alloc(5);
  head.writeUInt32BE(data.length + 1, 0);
  head.write(code, 4, 'latin1');
  return Buffer.concat([head, data]);
}
const u32 = (n: number) => Buffer.from([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);

/** Postfix's packets for one session: OPTNEG with its offer, connect, HELO, MAIL, RCPT, two header fields, a 2 KB body, end of message. */
const SESSION = Buffer.concat([
  packet('O', u32(6), u32(0x1ff), u32(0x1fffff)),
  packet('C', 'mx.bench.test\0', '4', Buffer.from([0x9c, 0x40]), '198.51.100.7\0'),
  packet('H', 'mx.bench.test\0'),
  packet('M', '<a@example.org>\0'),
  packet('R', '<b@example.net>\0'),
  packet('L', 'From\0', ' <a@example.org>\0'),
  packet('L', 'Subject\0', ' bench\0'),
  packet('N'),
  packet('B', `${'x'.repeat(70)}\r\n`.repeat(28)),
  packet('E'),
]);

/** Resolves at the end-of-message CONTINUE (the second one: RCPT is answered too). */
function session(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(SESSION));
    let buf = Buffer.alloc(0);
    let continues = 0;
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 5 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const code = String.fromCharCode(buf[4]);
        buf = buf.subarray(4 + buf.readUInt32BE(0));
        // The negotiation's answer, and modifications (loop-guard inserts its trace field).
        if (code === 'O' || '+-bhimpe2'.includes(code)) continue;
        if (code !== 'c') return reject(new Error(`milter replied ${code}`));
        if (++continues === 2) {
          socket.destroy();
          return resolve();
        }
      }
    });
    socket.on('error', reject);
  });
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'postseal-milter-conn-'));
  mkdirSync(path.join(dir, 'banks'));
  const port = await freePort();
  writeFileSync(path.join(dir, 'banks/default.yaml'), 'forward: { host: 127.0.0.1, port: 9 }\nstages: [loop-guard, header-sanity]\n');
  writeFileSync(
    path.join(dir, 'postseal.yaml'),
    `bankDir: banks\nworkers: ${workerCount}\nspool: { dir: ${dir}/spool }\nlisteners:\n  - { address: 127.0.0.1, port: ${port}, bank: default, protocol: milter }\n`,
  );
  const proc = spawn(path.join(tree, 'node_modules/.bin/node'), [path.join(tree, 'dist/cli/main.js'), 'start', '--config', path.join(dir, 'postseal.yaml')]);
  const lines: Record<string, unknown>[] = [];
  let rest = '';
  proc.stdout.on('data', (d: Buffer) => {
    rest += d.toString();
    for (let nl = rest.indexOf('\n'); nl >= 0; nl = rest.indexOf('\n')) {
      try {
        lines.push(JSON.parse(rest.slice(0, nl)));
      } catch {
        // Not a log line.
      }
      rest = rest.slice(nl + 1);
    }
  });
  const workers = () => [...new Set(lines.filter((l) => l.msg === 'worker started').map((l) => l.pid as number))];
  while (workers().length < workerCount || !lines.some((l) => l.msg === 'postseal started')) await new Promise((r) => setTimeout(r, 50));
  for (let i = 0; i < WARM_UP; i++) await session(port);
  // The log is written in blocks every 200 ms (src/lib/log.ts).
  const settle = () => new Promise((r) => setTimeout(r, 600));
  await settle();
  const pids = workers();
  const before = { primary: cpuOf(proc.pid!), workers: pids.map(cpuOf), messages: lines.filter((l) => l.msg === 'message').length };
  const started = process.hrtime.bigint();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < sessions) await session(port);
    }),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await settle();
  const primaryMs = ((cpuOf(proc.pid!) - before.primary) * 1000) / sessions;
  const workersMs = (pids.reduce((sum, pid, i) => sum + cpuOf(pid) - before.workers[i], 0) * 1000) / sessions;
  const split: Record<string, number> = {};
  for (const l of lines.filter((x) => x.msg === 'message').slice(before.messages)) split[String(l.worker)] = (split[String(l.worker)] ?? 0) + 1;
  const round = (x: number) => Math.round(x * 1000) / 1000;
  process.stdout.write(
    `${JSON.stringify({
      tree,
      sessions,
      concurrency,
      sessionsPerSecond: Math.round(sessions / seconds),
      primaryMsPerSession: round(primaryMs),
      workersMsPerSession: round(workersMs),
      split,
      load: os
        .loadavg()
        .map((x) => x.toFixed(2))
        .join(' '),
    })}\n`,
  );
  proc.kill('SIGTERM');
  await new Promise((r) => proc.on('exit', r));
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
});
