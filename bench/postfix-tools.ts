/**
 * Postfix's test programs: smtp-sink (the downstream, and the ceiling's receiver) and
 * smtp-source (the load). smtp-source sends a prepared file with -F (it appends CRLF to each
 * line, so the files have LF endings), speaks HELO without pipelining, and keeps one
 * connection per session with -d (reuse) or opens one per message without it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { waitForGreeting } from './proc';

export function findTool(name: string): string | null {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/bin', '/usr/lib/postfix/sbin'];
  for (const dir of dirs) if (dir && existsSync(path.join(dir, name))) return path.join(dir, name);
  return null;
}

export interface SmtpSink {
  readonly port: number;
  stop(): Promise<void>;
}

/**
 * smtp-sink on loopback, started and greeting: `extra` options before the usual ones (-c for
 * the whole-MTA bench's counter), `dumpFile` keeps every transaction (for the checks, slow).
 * Its stdout is a pipe when `extra` asks for output (-c), ignored otherwise.
 */
export async function spawnSmtpSink(bin: string, port: number, opts: { dumpFile?: string; extra?: string[] } = {}): Promise<{ child: ChildProcess; exited: Promise<void> }> {
  // As root smtp-sink insists on dropping privileges.
  const user = process.getuid?.() === 0 ? ['-u', 'nobody'] : [];
  const extra = opts.extra ?? [];
  const args = [...user, ...extra, '-m', '1024', ...(opts.dumpFile ? ['-D', opts.dumpFile] : []), `127.0.0.1:${port}`, '1024'];
  const child = spawn(bin, args, { stdio: ['ignore', extra.length ? 'pipe' : 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await waitForGreeting(port, 5000);
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`smtp-sink did not start: ${stderr.trim() || (err as Error).message}`);
  }
  return { child, exited };
}

/** smtp-sink on loopback; `dumpFile` keeps every transaction (for the checks, slow). */
export async function startSmtpSink(bin: string, port: number, dumpFile?: string): Promise<SmtpSink> {
  const { child, exited } = await spawnSmtpSink(bin, port, { dumpFile });
  return { port, stop: () => stopChild(child, exited) };
}

export async function stopChild(child: ChildProcess, exited: Promise<unknown>, signal: NodeJS.Signals = 'SIGTERM', graceMs = 10000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

export interface SourceRun {
  messages: number;
  seconds: number;
  mps: number;
}

export interface SourceLoad {
  port: number;
  file: string;
  concurrency: number;
  reuse: boolean;
  messages: number;
  from: string;
  to: string;
  timeoutMs: number;
}

/** One smtp-source run, timed from start to exit; fails on any non-2xx reply or the time limit. */
export function runSmtpSource(bin: string, load: SourceLoad): Promise<SourceRun> {
  const args = [
    '-s',
    String(load.concurrency),
    '-m',
    String(load.messages),
    ...(load.reuse ? ['-d'] : []),
    '-F',
    load.file,
    '-f',
    load.from,
    '-t',
    load.to,
    `127.0.0.1:${load.port}`,
  ];
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), load.timeoutMs);
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      if (code !== 0) {
        const why = signal ? `killed after ${load.timeoutMs} ms` : `exit ${code}`;
        return reject(new Error(`smtp-source ${args.join(' ')}: ${why}: ${stderr.trim().slice(0, 500)}`));
      }
      resolve({ messages: load.messages, seconds, mps: load.messages / seconds });
    });
  });
}
