/**
 * The daemons the policy service replaces, run for real beside it (Debian packages postgrey and
 * postfix-policyd-spf-python, scripts/install-test-deps.sh): postgrey as a TCP policy server
 * (it must start as root and drops to its own user; `policy_test_time` sets its clock), and
 * policyd-spf as Postfix's spawn(8) runs it, one request stream on stdin/stdout, its DNS
 * pointed at the loopback DNS server. Start fails (never skips) when a package is missing.
 */
import { type ChildProcess, type ChildProcessWithoutNullStreams, execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { requestText } from './policy';
import { freePort } from './redis-server';

export interface Anchor {
  ask(attrs: Record<string, string>): Promise<string>;
  /** What the daemon wrote to stderr (its log), for failure messages. */
  log(): string;
  stop(): Promise<void>;
}

function need(file: string, pkg: string): void {
  if (!existsSync(file)) throw new Error(`${file} is missing: install the Debian package ${pkg} (scripts/install-test-deps.sh)`);
}

/** Reads answer blocks ("action=...\n\n") from a stream, in order. */
function answers(stream: NodeJS.ReadableStream): () => Promise<string> {
  let buf = '';
  const waiting: ((s: string) => void)[] = [];
  const drain = () => {
    let end = buf.indexOf('\n\n');
    while (end >= 0 && waiting.length) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      (waiting.shift() as (s: string) => void)(block.replace(/^action=/, ''));
      end = buf.indexOf('\n\n');
    }
  };
  stream.on('data', (d: Buffer) => {
    buf += d.toString('latin1');
    drain();
  });
  return () =>
    new Promise((resolve) => {
      waiting.push(resolve);
      drain();
    });
}

export async function startPostgrey(args: string[] = []): Promise<Anchor & { port: number }> {
  need('/usr/sbin/postgrey', 'postgrey');
  const port = await freePort();
  const dbdir = mkdtempSync(path.join(tmpdir(), 'postseal-postgrey-'));
  const uid = Number(execFileSync('id', ['-u', 'postgrey']).toString().trim());
  chownSync(dbdir, uid, -1);
  const proc = spawn('/usr/sbin/postgrey', [`--inet=127.0.0.1:${port}`, `--dbdir=${dbdir}`, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout.on('data', (d) => (log += d));
  proc.stderr.on('data', (d) => (log += d));
  const end = Date.now() + 15000;
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (up) break;
    if (proc.exitCode !== null || Date.now() > end) throw new Error(`postgrey did not start: ${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const socket = net.connect(port, '127.0.0.1');
  const next = answers(socket);
  return {
    port,
    log: () => log,
    ask(attrs) {
      const a = next();
      socket.write(requestText(attrs));
      return a;
    },
    async stop() {
      socket.destroy();
      await stopProcess(proc);
    },
  };
}

/** policyd-spf with `config` lines (policyd-spf.conf syntax), asking the DNS server on 127.0.0.1:dnsPort. */
export function startPolicydSpf(dnsPort: number, config: string): Anchor {
  need('/usr/bin/policyd-spf', 'postfix-policyd-spf-python');
  const dir = mkdtempSync(path.join(tmpdir(), 'postseal-policyd-spf-'));
  const conf = path.join(dir, 'policyd-spf.conf');
  writeFileSync(conf, config);
  // pyspf asks dnspython's default resolver: point it at the test server, then run the daemon's own main().
  const wrapper = [
    'import sys, syslog, dns.resolver',
    // No syslog in a container: its log lines go to stderr, which log() returns.
    'syslog.syslog = lambda *a: sys.stderr.write(repr(a[-1]) + chr(10))',
    'r = dns.resolver.Resolver(configure=False)',
    "r.nameservers = ['127.0.0.1']",
    `r.port = ${dnsPort}`,
    'dns.resolver.default_resolver = r',
    'from spf_engine.policyd_spf import main',
    'main()',
  ].join('\n');
  const proc: ChildProcessWithoutNullStreams = spawn('/usr/bin/python3', ['-c', wrapper, conf]);
  let err = '';
  proc.stderr.on('data', (d) => (err += d));
  const next = answers(proc.stdout);
  return {
    log: () => err,
    ask(attrs) {
      if (proc.exitCode !== null) return Promise.reject(new Error(`policyd-spf exited: ${err}`));
      const a = next();
      proc.stdin.write(requestText(attrs));
      return a;
    },
    async stop() {
      proc.stdin.end();
      await stopProcess(proc);
    },
  };
}

/** SIGTERM, and SIGKILL when the daemon has not gone within 5 s (a loaded machine, a perl server draining). */
async function stopProcess(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}
