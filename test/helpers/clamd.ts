/**
 * A real clamd (Debian's clamav-daemon, scripts/install-test-deps.sh) in a temp folder, on a
 * unix socket and a free loopback TCP port, with a signature database the helper writes: no
 * signature download is possible here, and a tiny database makes clamd start in well under a
 * second.
 *
 * clamd has no built-in EICAR signature (measured: `clamscan -d <custom.ndb>` on the EICAR
 * file says OK), so the database holds two of our own: EICAR by its MD5 and size (an .hdb
 * line, as ClamAV's own database detects it) and a body signature (.ndb) of TEST_VIRUS_MARKER
 * anywhere in a file. clamd marks names from an unsigned database ".UNOFFICIAL".
 * start() rejects when clamd is missing, so a test that needs it fails instead of skipping.
 * Starting clamd and the EICAR signature are shared with the benchmark (bench/scanners.ts).
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { launchClamd, writeEicarDatabase } from '../../bench/scanners';
import { freePort } from './redis-server';

/** The EICAR test file (68 octets). */
export { EICAR } from '../../bench/scanners';
export const EICAR_NAME = 'Win.Test.EICAR_HDB-1.UNOFFICIAL';
/** Any file containing this is found as TEST_VIRUS_NAME. */
export const TEST_VIRUS_MARKER = 'POSTSEAL-TEST-VIRUS-7c1e-b3d0';
export const TEST_VIRUS_NAME = 'Postseal.Test.Marker.UNOFFICIAL';

export interface ClamdServer {
  readonly socket: string;
  readonly port: number;
  readonly streamMaxBytes: number;
  /** SIGKILL, as a crash would; restart() brings it back on the same socket and port. */
  kill(): Promise<void>;
  restart(): Promise<void>;
  stop(): Promise<void>;
  /** clamd's log, for failure messages. */
  log(): string;
}

function writeDatabase(dir: string): void {
  writeEicarDatabase(dir);
  writeFileSync(path.join(dir, 'postseal-test.ndb'), `Postseal.Test.Marker:0:*:${Buffer.from(TEST_VIRUS_MARKER).toString('hex')}\n`);
}

function end(child: ChildProcess | undefined, signal: NodeJS.Signals): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}

/**
 * `streamMaxBytes`: clamd's StreamMaxLength, small by default so that the limit is quick to reach;
 * `alertExceedsMax`: clamd's AlertExceedsMax (off by default, as in Debian's clamd.conf);
 * `maxFileSize`: clamd's MaxFileSize (25M by default), e.g. '1M'.
 */
export async function startClamd(opts: { streamMaxBytes?: number; alertExceedsMax?: boolean; maxFileSize?: string } = {}): Promise<ClamdServer> {
  const dir = mkdtempSync(path.join(tmpdir(), 'postseal-clamd-'));
  const db = path.join(dir, 'db');
  writeDatabase(db);
  const socket = path.join(dir, 'clamd.sock');
  const logFile = path.join(dir, 'clamd.log');
  const port = await freePort();
  const streamMaxBytes = opts.streamMaxBytes ?? 1024 * 1024;
  const configFile = path.join(dir, 'clamd.conf');
  writeFileSync(
    configFile,
    [
      'Foreground yes',
      `DatabaseDirectory ${db}`,
      `LocalSocket ${socket}`,
      `TCPSocket ${port}`,
      'TCPAddr 127.0.0.1',
      `StreamMaxLength ${streamMaxBytes}`,
      `AlertExceedsMax ${opts.alertExceedsMax ? 'yes' : 'no'}`,
      ...(opts.maxFileSize ? [`MaxFileSize ${opts.maxFileSize}`] : []),
      `LogFile ${logFile}`,
      'LogTime yes',
      // Not the database check every 600 s, nor the system's clamav user: this is a test's private instance.
      'SelfCheck 0',
      '',
    ].join('\n'),
  );
  let child: ChildProcess | undefined = await launchClamd(configFile, socket, logFile);
  return {
    socket,
    port,
    streamMaxBytes,
    async kill() {
      await end(child, 'SIGKILL');
      child = undefined;
    },
    async restart() {
      await end(child, 'SIGKILL');
      child = await launchClamd(configFile, socket, logFile);
    },
    async stop() {
      await end(child, 'SIGTERM');
      child = undefined;
      rmSync(dir, { recursive: true, force: true });
    },
    log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''),
  };
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(data: Buffer): number {
  let c = 0xffffffff;
  for (const b of data) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A zip archive (stored, no compression) of the given files, as `zip -0` writes it. */
export function zipOf(files: Record<string, string | Buffer>): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const [name, content] of Object.entries(files)) {
    const data = Buffer.isBuffer(content) ? content : Buffer.from(content, 'latin1');
    const fileName = Buffer.from(name);
    const crc = crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(10, 4);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(fileName.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(10, 6);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(fileName.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, fileName, data);
    centrals.push(central, fileName);
    offset += local.length + fileName.length + data.length;
  }
  const dir = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(Object.keys(files).length, 8);
  end.writeUInt16LE(Object.keys(files).length, 10);
  end.writeUInt32LE(dir.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, dir, end]);
}

/** A multipart/mixed message: a text part and `attachment` (base64) named `filename`. */
export function messageWithAttachment(opts: { filename: string; attachment: Buffer; subject?: string; messageId?: string; from?: string; to?: string }): string {
  const boundary = 'postseal-boundary-7f3a';
  const b64 = (opts.attachment.toString('base64').match(/.{1,76}/g) ?? []).join('\r\n');
  return [
    `From: <${opts.from ?? 'alice@example.org'}>`,
    `To: <${opts.to ?? 'bob@example.net'}>`,
    `Subject: ${opts.subject ?? 'the file you asked for'}`,
    `Message-ID: <${opts.messageId ?? 'virus-test@example.org'}>`,
    'MIME-Version: 1.0',
    `Content-Type: multipart/mixed; boundary="${boundary}"`,
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=us-ascii',
    '',
    'See the attachment.',
    `--${boundary}`,
    `Content-Type: application/zip; name="${opts.filename}"`,
    'Content-Transfer-Encoding: base64',
    `Content-Disposition: attachment; filename="${opts.filename}"`,
    '',
    b64,
    `--${boundary}--`,
    '',
  ].join('\r\n');
}
