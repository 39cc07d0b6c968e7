/**
 * `npm run bench -- --clients`: the content path's own pieces, each in one process, one call
 * after another (c=1, the way a message meets them) and eight at once: postseal's CPU per call
 * (process.cpuUsage, all threads) of
 *  - the clamd client (src/lib/clamd), a connection per scan and in kept IDSESSION connections;
 *  - the spamd client (src/lib/spamd), next to the least a client can do (connect, one write,
 *    read to the end: `minimal`), against the bench's spamd and against a local server that
 *    answers at once, with nothing to scan (`instant`): what is left between those two is the
 *    cost of going idle and waking for an answer that comes milliseconds later, not client work;
 *  - the banned stage's MIME walk (src/lib/mime messageContent), which needs no scanner.
 * The scanners are the bench's (bench/scanners.ts); their own CPU is not in these figures.
 */
import net from 'node:net';
import path from 'node:path';
import { makeMessage, type BenchKeys } from './messages';
import { ROOT } from './postseal';
import { startScanners } from './scanners';

/** The built modules (dist/, as the CLI runs them: the bench compiles apart from src/), as far as used here. */
type Raw = () => AsyncIterable<Buffer>;
interface BuiltMessage {
  readonly size: number;
  openRaw: Raw;
}
/** Loaded when the benchmark runs, not when the bench starts (a build without them still runs the rest). */
function built() {
  const dist = (file: string) => require(path.join(ROOT, 'dist', file));
  return {
    ...(dist('lib/clamd/index.js') as { ClamdClient: new (o: Record<string, unknown>) => { scan(open: Raw): Promise<{ kind: string }>; close(): void } }),
    ...(dist('lib/mime/parts.js') as { messageContent(m: BuiltMessage, limits: object, signal: AbortSignal): Promise<unknown> }),
    ...(dist('lib/spamd/client.js') as { spamdCheck(o: object, source: { size: number; open: Raw }): Promise<unknown> }),
    ...(dist('transaction/message.js') as { Message: { parse(spool: unknown): BuiltMessage } }),
    ...(dist('transaction/spool.js') as { memorySpool(b: Buffer): unknown }),
  };
}

const MiB = 1024 * 1024;
/** The banned stage's default unpacking limits (src/stages/banned/schema.ts). */
const LIMITS = { maxDepth: 8, maxMembers: 2000, maxMemberBytes: 32 * MiB, maxTotalBytes: 128 * MiB, maxRatio: 100, ratioFloorBytes: MiB };

export interface ClientCell {
  what: string;
  sizeKb: number;
  concurrency: number;
  calls: number;
  cpuMsPerCall: number;
  callsPerSecond: number;
}

/** CPU per call of `fn`, `calls` times, `concurrency` at once, after a warm-up. */
async function measure(calls: number, concurrency: number, fn: () => Promise<unknown>): Promise<{ cpuMsPerCall: number; callsPerSecond: number }> {
  for (let i = 0; i < Math.min(50, calls); i++) await fn();
  const cpu = process.cpuUsage();
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < calls) await fn();
    }),
  );
  const used = process.cpuUsage(cpu);
  const ms = performance.now() - started;
  return { cpuMsPerCall: Math.round(((used.user + used.system) / 1000 / calls) * 1000) / 1000, callsPerSecond: Math.round((calls / ms) * 1000) };
}

/** The least a SPAMC client does: connect, one write, half-close, read to the end. */
function minimalSpamc(port: number, request: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.on('connect', () => socket.end(request));
    socket.on('data', () => undefined);
    socket.on('end', () => {
      socket.destroy();
      resolve();
    });
    socket.on('error', reject);
  });
}

/** A server that reads a request to its end and answers 2 KB at once: no scan to wait for. */
async function instantServer(): Promise<{ port: number; close(): Promise<void> }> {
  const answer = Buffer.alloc(2000, 'a');
  const server = net.createServer((s) => {
    s.on('data', () => undefined);
    s.on('end', () => s.end(answer));
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { port: (server.address() as net.AddressInfo).port, close: () => new Promise<void>((r) => server.close(() => r())) };
}

export async function clientsBenchmark(opts: { dir: string; keys: BenchKeys; sizes: readonly number[]; log: (line: string) => void }): Promise<ClientCell[]> {
  const { ClamdClient, messageContent, spamdCheck, Message, memorySpool } = built();
  const cells: ClientCell[] = [];
  const scanners = await startScanners(opts.dir, opts.log);
  const instant = await instantServer();
  try {
    for (const sizeKb of opts.sizes) {
      const bytes = (await makeMessage(opts.dir, sizeKb, 'plain', opts.keys)).bytes;
      const message = Message.parse(memorySpool(bytes));
      const add = async (what: string, calls: number, concurrency: number, fn: () => Promise<unknown>) => {
        const m = await measure(calls, concurrency, fn);
        cells.push({ what, sizeKb, concurrency, calls, ...m });
        opts.log(`clients: ${what} ${sizeKb} KB c=${concurrency}: ${m.cpuMsPerCall} ms CPU/call, ${m.callsPerSecond} calls/s`);
      };
      const signal = new AbortController().signal;
      await add('MIME walk (banned)', 3000, 1, () => messageContent(message, LIMITS, signal));
      for (const keep of [0, 8]) {
        const clamd = new ClamdClient({
          endpoint: { socket: scanners.clamd.socket },
          connectTimeoutMs: 5000,
          timeoutMs: 30000,
          chunkBytes: 65536,
          maxStreamBytes: 64 * MiB,
          keepConnections: keep,
        });
        const scan = async () => {
          const r = await clamd.scan(() => message.openRaw());
          if (r.kind !== 'clean') throw new Error(`clamd: ${JSON.stringify(r)}`);
        };
        const what = keep ? 'clamd client, kept connections' : 'clamd client, a connection per scan';
        await add(what, 1000, 1, scan);
        await add(what, 2000, 8, scan);
        clamd.close();
      }
      const spamd = { host: scanners.spamd.host, port: scanners.spamd.port, timeoutMs: 30000, command: 'REPORT' };
      const source = { size: message.size, open: () => message.openRaw() };
      const request = Buffer.concat([Buffer.from(`REPORT SPAMC/1.5\r\nContent-length: ${bytes.length}\r\n\r\n`), bytes]);
      await add('spamd client', 1000, 1, () => spamdCheck(spamd, source));
      await add('minimal client, spamd', 1000, 1, () => minimalSpamc(scanners.spamd.port, request));
      await add('minimal client, instant server', 2000, 1, () => minimalSpamc(instant.port, request));
    }
  } finally {
    await instant.close();
    await scanners.stop();
  }
  return cells;
}

export function clientsMarkdown(cells: readonly ClientCell[]): string {
  return [
    '| piece | KB | c | calls | postseal CPU ms/call | calls/s |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    ...cells.map((c) => `| ${c.what} | ${c.sizeKb} | ${c.concurrency} | ${c.calls} | ${c.cpuMsPerCall.toFixed(3)} | ${c.callsPerSecond} |`),
  ].join('\n');
}
