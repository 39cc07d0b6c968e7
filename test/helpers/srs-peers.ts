/**
 * The two SRS implementations postseal must agree with, both from Debian:
 * - Mail::SRS (libmail-srs-perl), driven through test/fixtures/scripts/mail-srs.pl with an
 *   injected clock;
 * - postsrsd 1.10 (the libsrs2 C code), started on loopback on free ports with its own secrets
 *   file, asked over tcp_table. It reads the real clock.
 * Either missing makes the tests fail (scripts/install-test-deps.sh installs them).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface MailSrsOptions {
  secrets: readonly string[];
  /** Seconds since the epoch. */
  time?: number;
  hashLength?: number;
  maxAgeDays?: number;
  separator?: string;
}

const script = path.resolve(__dirname, '../fixtures/scripts/mail-srs.pl');

/** Runs each line ("forward SENDER ALIAS" / "reverse ADDRESS") through Mail::SRS; "OK x" or "ERR why" per line. */
export function mailSrs(opts: MailSrsOptions, lines: readonly string[]): Promise<string[]> {
  const env = {
    ...process.env,
    SRS_SECRETS: opts.secrets.join('\n'),
    SRS_HASH_LENGTH: String(opts.hashLength ?? 4),
    SRS_MAX_AGE: String(opts.maxAgeDays ?? 21),
    SRS_SEPARATOR: opts.separator ?? '=',
    ...(opts.time !== undefined ? { SRS_TIME: String(opts.time) } : {}),
  };
  return new Promise((resolve, reject) => {
    const child = execFile('/usr/bin/perl', [script], { env, timeout: 20000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`Mail::SRS failed: ${err.message}\n${stderr}`));
      resolve(stdout.split('\n').slice(0, lines.length));
    });
    child.stdin!.end(`${lines.join('\n')}\n`);
  });
}

export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}

export interface Postsrsd {
  readonly forwardPort: number;
  readonly reversePort: number;
  stop(): Promise<void>;
}

/** Starts Debian's postsrsd in the foreground on loopback; as root it drops to nobody (-u). */
export async function startPostsrsd(opts: { domain: string; secrets: readonly string[]; excludeDomains?: readonly string[] }): Promise<Postsrsd> {
  const dir = mkdtempSync(path.join(tmpdir(), 'postsrsd-'));
  const secretFile = path.join(dir, 'secret');
  writeFileSync(secretFile, `${opts.secrets.join('\n')}\n`);
  chmodSync(secretFile, 0o600);
  const forwardPort = await freePort();
  const reversePort = await freePort();
  const args = ['-s', secretFile, '-d', opts.domain, '-l', '127.0.0.1', '-4', '-f', String(forwardPort), '-r', String(reversePort)];
  if (opts.excludeDomains?.length) args.push(`-X${opts.excludeDomains.join(',')}`);
  if (process.getuid?.() === 0) args.push('-u', 'nobody');
  const child: ChildProcess = spawn('/usr/sbin/postsrsd', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const deadline = Date.now() + 10000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`postsrsd exited (${child.exitCode}): ${stderr}`);
    if (await canConnect(forwardPort)) break;
    if (Date.now() > deadline) throw new Error(`postsrsd did not listen on ${forwardPort}: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    forwardPort,
    reversePort,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** A tcp_table client: "get KEY" lines on one connection, the reply lines in order. */
export async function tcpTableGet(port: number, keys: readonly string[]): Promise<string[]> {
  const sock = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  const replies: string[] = [];
  let buf = '';
  const done = new Promise<void>((resolve, reject) => {
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        replies.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
      if (replies.length >= keys.length) resolve();
    });
    sock.once('error', reject);
    sock.once('close', () => resolve());
  });
  sock.write(keys.map((k) => `get ${tcpEncode(k)}\n`).join(''));
  await done;
  sock.destroy();
  return replies;
}

/** tcp_table(5) encoding of a key: %XX for whitespace, "%" and bytes outside printable ASCII. */
export function tcpEncode(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) out += b <= 0x20 || b === 0x25 || b >= 0x7f ? `%${b.toString(16).padStart(2, '0')}` : String.fromCharCode(b);
  return out;
}

export function tcpDecode(s: string): string {
  return Buffer.from(
    s.replace(/%([0-9a-fA-F]{2})/g, (_, h: string) => String.fromCharCode(Number.parseInt(h, 16))),
    'latin1',
  ).toString('utf8');
}
