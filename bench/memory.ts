/**
 * The memory benchmark: one 50 MB message, then four at once, through the originating path
 * of a single postseal process (workers 1, so one process holds every message), and the
 * growth of its peak RSS over its idle RSS after a warm-up. Messages above the spool
 * threshold go to a temp file, so the growth is buffers in flight, not message copies.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { makeMessage, ENVELOPE, type BenchKeys } from './messages';
import { runSmtpSource } from './postfix-tools';
import { startPostseal } from './postseal';
import { readRss, resetPeakRss } from './proc';
import type { MemoryResult } from './report';

export interface MemoryBench {
  dir: string;
  keys: BenchKeys;
  sinkPort: number;
  dnsPort: number;
  smtpSource: string;
  messageMb: number;
}

export async function memoryBenchmark(opts: MemoryBench): Promise<MemoryResult> {
  const dir = path.join(opts.dir, 'memory');
  mkdirSync(dir, { recursive: true });
  const big = await makeMessage(dir, opts.messageMb * 1024, 'plain', opts.keys);
  const small = await makeMessage(dir, 20, 'plain', opts.keys);
  const ps = await startPostseal({ dir, keys: opts.keys, sinkPort: opts.sinkPort, dnsPort: opts.dnsPort, workers: 1, paths: ['originating'] });
  try {
    const port = ps.ports.originating;
    const send = (file: string, concurrency: number, messages: number) =>
      runSmtpSource(opts.smtpSource, { port, file, from: ENVELOPE.originating, to: ENVELOPE.to, concurrency, reuse: true, messages, timeoutMs: 300000 });
    // Warm-up: code paths compiled, pools filled, one large message through the spool file.
    await send(small.file, 4, 200);
    await send(big.file, 1, 1);
    await new Promise((r) => setTimeout(r, 1000));
    const idle = readRss(ps.pid).currentMb[0];
    resetPeakRss(ps.pid);
    await send(big.file, 1, 1);
    const one = readRss(ps.pid).maxProcessPeakMb - idle;
    await new Promise((r) => setTimeout(r, 1000));
    const idle4 = readRss(ps.pid).currentMb[0];
    resetPeakRss(ps.pid);
    await send(big.file, 4, 4);
    const four = readRss(ps.pid).maxProcessPeakMb - idle4;
    return { messageMb: opts.messageMb, workerIdleRssMb: idle, oneMessageGrowthMb: Math.round(one * 10) / 10, fourMessagesGrowthMb: Math.round(four * 10) / 10 };
  } finally {
    await ps.stop();
  }
}
