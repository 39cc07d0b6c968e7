/**
 * A postseal cluster for the milter socket tests (test/cluster/shared-sockets*.test.ts): the
 * built `postseal start` with real workers on a milter listener, the kernel's view of its
 * listening socket (/proc/net/tcp), and milter sessions over real sockets.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { startDaemon, type Daemon } from './cli';
import { MilterClient, messagePackets } from './milter-client';

export const blockLoop = path.resolve(__dirname, '../fixtures/scripts/block-loop-on-signal.js');

/** Daemons a test started; `stopStarted` (afterEach) lets their stopped workers run and kills what is left. */
export const started: Daemon[] = [];
export function stopStarted(): void {
  for (const d of started.splice(0)) {
    for (const l of d.lines.filter((x) => x.msg === 'worker started')) {
      try {
        process.kill(l.pid as number, 'SIGCONT');
      } catch {
        // Already gone.
      }
    }
    if (d.proc.exitCode === null && d.proc.signalCode === null) d.proc.kill('SIGKILL');
  }
}

export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

export function configFile(listeners: Record<string, unknown>[], dir = mkdtempSync(path.join(tmpdir(), 'postseal-shared-')), workers = 2): string {
  mkdirSync(path.join(dir, 'banks'), { recursive: true });
  writeFileSync(path.join(dir, 'banks', 'default.yaml'), YAML.stringify({ forward: { host: '127.0.0.1', port: 9 }, stages: ['loop-guard', 'header-sanity'] }));
  const file = path.join(dir, 'postseal.yaml');
  writeFileSync(file, YAML.stringify({ bankDir: 'banks', workers, shutdownGraceMs: 2000, spool: { dir: path.join(dir, 'spool') }, listeners }));
  return file;
}

export const milterAt = (port: number, extra: Record<string, unknown> = {}) => ({ address: '127.0.0.1', port, bank: 'default', protocol: 'milter', ...extra });

export async function cluster(port: number, opts: Parameters<typeof startDaemon>[1] = {}, listeners = [milterAt(port)]) {
  const file = configFile(listeners);
  const d = startDaemon(file, { nodeArgs: ['--require', blockLoop], ...opts });
  started.push(d);
  await d.waitFor((l) => l.msg === 'postseal started', 45_000);
  return { d, file, workers: await workerPids(d, 2) };
}

/** The pids of the workers that logged 'worker started', once `count` have (the newest last). */
export async function workerPids(d: Daemon, count: number): Promise<number[]> {
  const pids = () => [...new Set(d.lines.filter((l) => l.msg === 'worker started').map((l) => l.pid as number))];
  await d.waitFor(() => pids().length >= count, 45_000);
  return pids();
}

/** The listening socket on 127.0.0.1:port as the kernel shows it: its inode and how many connections wait to be accepted. */
export function listening(port: number): { inode: string; queued: number } | undefined {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1] === local && f[3] === '0A') return { inode: f[9], queued: Number.parseInt(f[4].split(':')[1], 16) };
  }
  return undefined;
}

/** Connects and sends option negotiation; `served` resolves with the time of the milter's answer, or rejects if the connection is reset or closed first. */
export async function offer(port: number): Promise<{ client: MilterClient; served: Promise<number> }> {
  const client = await MilterClient.connect(port);
  return { client, served: client.negotiate().then(() => Date.now()) };
}

/** How each offered session ended: 'served', or the error that ended it (e.g. 'milter connection closed'). */
export function outcomes(offers: readonly { served: Promise<number> }[]): Promise<string[]> {
  return Promise.all(
    offers.map((o) =>
      o.served.then(
        () => 'served',
        (err: Error) => err.message,
      ),
    ),
  );
}

/** One milter session on `port`, negotiated (served by a worker), then closed. */
export async function serveOne(port: number): Promise<void> {
  const { client, served } = await offer(port);
  await served;
  client.close();
}

/** SIGTERM to the daemon; its exit code. */
export async function stop(d: Daemon): Promise<number | null> {
  d.proc.kill('SIGTERM');
  return d.exited;
}

/** One message over its own connection, as Postfix sends a session per message. */
export async function oneMessage(port: number): Promise<void> {
  const c = await MilterClient.connect(port);
  await c.negotiate();
  await messageThrough(c);
  c.close();
}

/** One message through a negotiated session: its envelope and content are answered with continue, then its end of message with a final reply. */
export async function messageThrough(c: MilterClient): Promise<void> {
  const p = messagePackets({
    from: 'a@example.org',
    to: ['b@example.net'],
    header: [
      ['From', ' <a@example.org>'],
      ['Subject', ' x'],
    ],
    body: 'hi\r\n',
  });
  c.send(...p.envelope, ...p.content, p.eom);
  expect((await c.next()).code).toBe('c');
  await c.untilFinal();
}

/** Rewrites the configuration's listeners, sends SIGHUP and waits until both workers answered it (reloaded or refused). */
export async function reloadWith(d: Daemon, file: string, listeners: Record<string, unknown>[]): Promise<void> {
  const done = () => d.lines.filter((l) => l.msg === 'configuration reloaded' || /^reload (failed|refused)/.test(l.msg as string)).length;
  const before = done();
  const config = YAML.parse(readFileSync(file, 'utf8'));
  config.listeners = listeners;
  writeFileSync(file, YAML.stringify(config));
  d.proc.kill('SIGHUP');
  await d.waitFor(() => done() >= before + 2);
}
