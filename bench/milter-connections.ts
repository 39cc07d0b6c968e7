/**
 * `node dist/bench/milter-connections.js [--tree DIR] [--sessions N] [--concurrency C] [--workers W]
 * [--bank cheap|originating] [--size KB] [--steps=MS] [--node-args=ARGS]`: what a milter session costs a postseal cluster
 * (bench/README.md "One socket for the workers", "The milter's CPU per message"), without
 * Postfix on the same two cores. The built `postseal start` of DIR (default this checkout;
 * another checkout's for an A/B; its dist/ and node, but this checkout's bench banks and config,
 * so an A/B across a change of the configuration's shape compares different set-ups) runs W
 * workers (default 2) and one milter listener. Its bank:
 * `cheap` (the default) runs two cheap stages (loop-guard, header-sanity) on a 2 KB message, so
 * the connection's own cost is a large part of the message's; `originating` is the whole-MTA
 * bench's postseal-milter set-up (bench/postseal.ts: the shipped ORIGINATING bank, seven-bit
 * and RSA-2048 signing, the bench's loopback DNS server) on its `plain` message of --size KB
 * (default 20). This process plays Postfix: N sessions, C at a time, each a new connection
 * with option negotiation, one message and close, as smtpd does per SMTP session. Prints one
 * JSON line: sessions/s, CPU per session of the primary and of the workers (user + system from
 * /proc: the client's own CPU is not counted), and how many messages each worker's log line
 * counted. A reply other than a modification or CONTINUE fails the run. --steps=MS writes each
 * session in the groups Postfix sends (negotiation, CONNECT, HELO, MAIL, RCPT, then header, body
 * and end of message) MS apart, which sets a slower pace, as Postfix's. --node-args=ARGS: options for
 * postseal's node (e.g. `--cpu-prof --cpu-prof-dir=DIR`), which its workers inherit.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startDnsServer } from './dns-server';
import { ENVELOPE, makeKeys, makeMessage } from './messages';
import { ROOT, startPostseal } from './postseal';
import { freePort, processTree } from './proc';

const { values: opt } = parseArgs({
  options: {
    tree: { type: 'string' },
    sessions: { type: 'string' },
    concurrency: { type: 'string' },
    workers: { type: 'string' },
    bank: { type: 'string' },
    size: { type: 'string' },
    'node-args': { type: 'string' },
    steps: { type: 'string' },
  },
});
const tree = path.resolve(opt.tree ?? ROOT);
const sessions = Number(opt.sessions ?? 3000);
const concurrency = Number(opt.concurrency ?? 8);
const workerCount = Number(opt.workers ?? 2);
const bankKind = opt.bank ?? 'cheap';
if (bankKind !== 'cheap' && bankKind !== 'originating') throw new Error(`--bank: cheap or originating, not ${bankKind}`);
const nodeArgs = opt['node-args']?.split(/\s+/).filter(Boolean) ?? [];
/** --steps=MS: the packets in Postfix's groups, MS apart (0: not grouped, one write). */
const steps = Number(opt.steps ?? 0);
const WARM_UP = 200;

/** One process's user + system seconds, from its own /proc entry (the primary without its workers). */
function cpuOf(pid: number): number {
  const { user, system } = cpuSplit(pid);
  return user + system;
}

/** User and system seconds apart: the system share is the kernel's work for the process (socket calls, wake-ups). */
function cpuSplit(pid: number): { user: number; system: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(fields[11]) / 100, system: Number(fields[12]) / 100 };
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
const CHEAP_SESSION = Buffer.concat([
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

/**
 * The same for a whole message as Postfix sends it: each header field as SMFIC_HEADER (name,
 * then the value with its leading space and LF inside folds), the body with CRLF line ends in
 * chunks of at most 65535 bytes.
 */
function sessionOf(message: Buffer, from: string, to: string): Buffer {
  const split = message.indexOf('\r\n\r\n');
  const fields = message
    .subarray(0, split)
    .toString('latin1')
    .split(/\r\n(?![ \t])/);
  const body = message.subarray(split + 4);
  const chunks: Buffer[] = [];
  for (let pos = 0; pos < body.length; pos += 65535) chunks.push(packet('B', body.subarray(pos, pos + 65535)));
  return Buffer.concat([
    packet('O', u32(6), u32(0x1ff), u32(0x1fffff)),
    packet('C', 'mx.bench.test\0', '4', Buffer.from([0x9c, 0x40]), '127.0.0.1\0'),
    packet('H', 'mx.bench.test\0'),
    packet('M', `<${from}>\0`),
    packet('R', `<${to}>\0`),
    ...fields.map((f) => packet('L', `${f.slice(0, f.indexOf(':'))}\0`, `${f.slice(f.indexOf(':') + 1).replace(/\r\n/g, '\n')}\0`)),
    packet('N'),
    ...chunks,
    packet('E'),
  ]);
}

/**
 * The session's packets in the groups Postfix writes them (--steps): the negotiation, then one
 * group per SMTP command (CONNECT when the client connects, HELO, MAIL, RCPT), then the header,
 * body and end of message that cleanup sends together. Each packet starts with its length, so
 * the groups are cut at the codes that begin one.
 */
function stepsOf(all: Buffer): Buffer[] {
  const groups: Buffer[] = [];
  let start = 0;
  for (let pos = 0; pos < all.length; pos += 4 + all.readUInt32BE(pos)) {
    const code = String.fromCharCode(all[pos + 4]);
    if (pos > start && 'CHMRL'.includes(code) && !(code === 'L' && String.fromCharCode(all[start + 4]) === 'L')) {
      groups.push(all.subarray(start, pos));
      start = pos;
    }
  }
  groups.push(all.subarray(start));
  return groups;
}

/** Resolves at the end-of-message CONTINUE (the second one: RCPT is answered too) with the names of the header fields inserted (SMFIR_INSHEADER). */
function session(port: number, packets: Buffer): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const write = async () => {
      if (!steps) return void socket.write(packets);
      // A gap between the groups, as between an SMTP client's commands: each one its own read.
      for (const g of stepsOf(packets)) {
        socket.write(g);
        await new Promise((r) => setTimeout(r, steps));
      }
    };
    const socket = net.connect(port, '127.0.0.1', () => void write());
    socket.setNoDelay(true);
    let buf = Buffer.alloc(0);
    let continues = 0;
    const inserted: string[] = [];
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 5 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const code = String.fromCharCode(buf[4]);
        // SMFIR_INSHEADER: index (4 bytes), name, NUL, value, NUL.
        if (code === 'i') inserted.push(buf.toString('latin1', 9, buf.indexOf(0, 9)));
        buf = buf.subarray(4 + buf.readUInt32BE(0));
        // The negotiation's answer, and modifications (loop-guard inserts its trace field).
        if (code === 'O' || '+-bhimpe2'.includes(code)) continue;
        if (code !== 'c') return reject(new Error(`milter replied ${code}`));
        if (++continues === 2) {
          socket.destroy();
          return resolve(inserted);
        }
      }
    });
    socket.on('error', reject);
  });
}

/** A running postseal cluster with one milter listener, whichever bank. */
interface Cluster {
  primary: number;
  port: number;
  packets: Buffer;
  workers(): number[];
  /** The per-message log lines so far. */
  messages(): Record<string, unknown>[];
  stop(): Promise<void>;
}

/** `cheap`: the built postseal of `tree`, its log read from stdout. */
async function cheapCluster(dir: string): Promise<Cluster> {
  mkdirSync(path.join(dir, 'banks'));
  const port = await freePort();
  writeFileSync(path.join(dir, 'banks/default.yaml'), 'forward: { host: 127.0.0.1, port: 9 }\nstages: [loop-guard, header-sanity]\n');
  writeFileSync(
    path.join(dir, 'postseal.yaml'),
    `bankDir: banks\nworkers: ${workerCount}\nspool: { dir: ${dir}/spool }\nlisteners:\n  - { address: 127.0.0.1, port: ${port}, bank: default, protocol: milter }\n`,
  );
  const proc = spawn(path.join(tree, 'node_modules/.bin/node'), [...nodeArgs, path.join(tree, 'dist/cli/main.js'), 'start', '--config', path.join(dir, 'postseal.yaml')]);
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
  return {
    primary: proc.pid!,
    port,
    packets: CHEAP_SESSION,
    workers,
    messages: () => lines.filter((l) => l.msg === 'message'),
    stop: async () => {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.on('exit', r));
    },
  };
}

/** `originating`: the whole-MTA bench's postseal-milter set-up (bench/postseal.ts), its log on a file. */
async function originatingCluster(dir: string): Promise<Cluster> {
  const keys = makeKeys(dir);
  const dns = await startDnsServer(keys.dns);
  const message = await makeMessage(dir, Number(opt.size ?? 20), 'plain', keys);
  const ps = await startPostseal({ dir, keys, sinkPort: 9, dnsPort: dns.port, workers: workerCount, paths: ['originating'], listenerProtocol: 'milter', root: tree, nodeArgs });
  const logLines = () =>
    readFileSync(ps.logFile, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return {
    primary: ps.pid,
    port: ps.ports.originating,
    packets: sessionOf(message.bytes, ENVELOPE.originating, ENVELOPE.to),
    workers: () => processTree(ps.pid).slice(1),
    messages: () => logLines().filter((l) => l.msg === 'message'),
    stop: async () => {
      await ps.stop();
      await dns.close();
    },
  };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'postseal-milter-conn-'));
  const c = bankKind === 'cheap' ? await cheapCluster(dir) : await originatingCluster(dir);
  const { port } = c;
  const session1 = () => session(port, c.packets);
  // A signing bank that stopped signing would make a fast, meaningless figure.
  const first = await session1();
  if (bankKind === 'originating' && !first.includes('DKIM-Signature')) throw new Error(`the originating bank inserted no DKIM-Signature (only ${first.join(', ') || 'nothing'})`);
  for (let i = 0; i < WARM_UP; i++) await session1();
  // The log is written in blocks every 200 ms (src/lib/log.ts).
  const settle = () => new Promise((r) => setTimeout(r, 600));
  await settle();
  const pids = c.workers();
  const before = { primary: cpuOf(c.primary), workers: pids.map(cpuOf), system: pids.map((p) => cpuSplit(p).system), messages: c.messages().length };
  const started = process.hrtime.bigint();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < sessions) await session1();
    }),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await settle();
  const primaryMs = ((cpuOf(c.primary) - before.primary) * 1000) / sessions;
  const workersMs = (pids.reduce((sum, pid, i) => sum + cpuOf(pid) - before.workers[i], 0) * 1000) / sessions;
  const workersSystemMs = (pids.reduce((sum, pid, i) => sum + cpuSplit(pid).system - before.system[i], 0) * 1000) / sessions;
  const split: Record<string, number> = {};
  for (const l of c.messages().slice(before.messages)) split[String(l.worker)] = (split[String(l.worker)] ?? 0) + 1;
  const round = (x: number) => Math.round(x * 1000) / 1000;
  process.stdout.write(
    `${JSON.stringify({
      tree,
      bank: bankKind,
      ...(bankKind === 'originating' ? { sizeKb: Number(opt.size ?? 20) } : {}),
      sessions,
      concurrency,
      sessionsPerSecond: Math.round(sessions / seconds),
      primaryMsPerSession: round(primaryMs),
      workersMsPerSession: round(workersMs),
      ofWhichSystem: round(workersSystemMs),
      split,
      load: os
        .loadavg()
        .map((x) => x.toFixed(2))
        .join(' '),
    })}\n`,
  );
  await c.stop();
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
});
