/**
 * Per-message latency, measured with our own SMTP client because smtp-source reports only
 * totals. `concurrency` sessions send for a fixed time, either back to back (a closed loop,
 * like smtp-source -s: at saturation the latency is just concurrency / throughput) or paced
 * to a total of `rateMps`. Each message's time runs from MAIL FROM to the 250 after the
 * final dot, and without reuse from the TCP connect, so the greeting and EHLO count too.
 */
import net from 'node:net';

export interface LatencyLoad {
  port: number;
  /** The message with CRLF endings; dot-stuffed here. */
  message: Buffer;
  from: string;
  to: string;
  concurrency: number;
  reuse: boolean;
  seconds: number;
  /** Messages per second over all sessions; absent: back to back. */
  rateMps?: number;
}

export interface LatencyResult {
  messages: number;
  p50Ms: number;
  p99Ms: number;
  /**
   * p99 of each step of the message, ms: MAIL to its 250, RCPT, DATA to 354, the data to the
   * final 250 (where the filter's pipeline runs); which step the tail is in.
   */
  stepP99Ms: { mail: number; rcpt: number; data: number; dot: number };
  /** Every message's time and steps, sorted by time: what `pooled` merges. */
  readonly samples: readonly number[];
  readonly steps: readonly Steps[];
}

type Steps = [number, number, number, number];

export async function measureLatency(load: LatencyLoad): Promise<LatencyResult> {
  const data = Buffer.concat([Buffer.from(load.message.toString('latin1').replace(/^\./gm, '..'), 'latin1'), Buffer.from(load.message.at(-1) === 0x0a ? '.\r\n' : '\r\n.\r\n')]);
  const samples: number[] = [];
  const steps: Steps[] = [];
  const stopAt = performance.now() + load.seconds * 1000;
  // Paced sessions start their messages every concurrency/rate seconds, staggered.
  const interval = load.rateMps ? (1000 * load.concurrency) / load.rateMps : 0;
  const start = performance.now();
  await Promise.all(Array.from({ length: load.concurrency }, (_, i) => session(load, data, stopAt, samples, steps, start + (i * interval) / load.concurrency, interval)));
  if (samples.length === 0) throw new Error(`no message went through 127.0.0.1:${load.port} in ${load.seconds} s`);
  return summary(samples, steps);
}

/**
 * Several runs of the same load as one: their messages pooled, so a p99 rests on all of them.
 * The bench alternates the runs through postseal and direct, so that a burst of other work on
 * the machine falls on both sides instead of deciding one run's p99 (bench/README.md).
 */
export function pooled(runs: readonly LatencyResult[]): LatencyResult {
  return summary(
    runs.flatMap((r) => r.samples),
    runs.flatMap((r) => r.steps),
  );
}

function summary(samples: number[], steps: Steps[]): LatencyResult {
  samples.sort((a, b) => a - b);
  const step = (i: number) =>
    percentile(
      steps.map((s) => s[i]).sort((a, b) => a - b),
      0.99,
    );
  return {
    messages: samples.length,
    p50Ms: percentile(samples, 0.5),
    p99Ms: percentile(samples, 0.99),
    stepP99Ms: { mail: step(0), rcpt: step(1), data: step(2), dot: step(3) },
    samples,
    steps,
  };
}

/** Nearest-rank percentile of sorted samples. */
export function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

async function session(load: LatencyLoad, data: Buffer, stopAt: number, samples: number[], steps: Steps[], firstAt: number, interval: number): Promise<void> {
  let conn: Conn | null = null;
  let next = firstAt;
  try {
    // With reuse a session's connection is set up before its clock starts, as Postfix's
    // connection cache would have it; without, the connect and greeting are the message's.
    if (load.reuse) conn = await Conn.open(load.port);
    while (performance.now() < stopAt) {
      const wait = next - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      next = Math.max(next + interval, performance.now());
      const started = performance.now();
      if (!conn) conn = await Conn.open(load.port);
      const t0 = performance.now();
      await conn.expect(`MAIL FROM:<${load.from}>`, 250);
      const t1 = performance.now();
      await conn.expect(`RCPT TO:<${load.to}>`, 250);
      const t2 = performance.now();
      await conn.expect('DATA', 354);
      const t3 = performance.now();
      await conn.expect(data, 250);
      const t4 = performance.now();
      samples.push(t4 - started);
      steps.push([t1 - t0, t2 - t1, t3 - t2, t4 - t3]);
      if (!load.reuse) {
        await conn.quit();
        conn = null;
      }
    }
  } finally {
    await conn?.quit();
  }
}

class Conn {
  private buffer = '';
  private waiting: ((line: string) => void) | null = null;
  private failure: Error | null = null;

  private constructor(private readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => {
      this.buffer += d.toString('latin1');
      this.deliver();
    });
    const fail = (err: Error) => {
      this.failure = err;
      this.waiting?.('');
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('connection closed')));
  }

  static async open(port: number): Promise<Conn> {
    const socket = net.connect({ host: '127.0.0.1', port });
    const conn = new Conn(socket);
    await conn.reply(220);
    await conn.expect('EHLO latency.bench.example', 250);
    return conn;
  }

  async expect(command: string | Buffer, code: number): Promise<void> {
    this.socket.write(typeof command === 'string' ? `${command}\r\n` : command);
    await this.reply(code);
  }

  async quit(): Promise<void> {
    if (!this.failure) await this.expect('QUIT', 221).catch(() => undefined);
    this.socket.destroy();
  }

  /** Reads one (possibly multi-line) reply and checks its code. */
  private async reply(code: number): Promise<void> {
    for (;;) {
      const line = await this.line();
      if (line[3] === '-') continue;
      if (!line.startsWith(String(code))) throw new Error(`expected ${code}, got: ${line}`);
      return;
    }
  }

  private line(): Promise<string> {
    return new Promise((resolve, reject) => {
      this.waiting = (line) => {
        this.waiting = null;
        if (this.failure) reject(this.failure);
        else resolve(line);
      };
      this.deliver();
    });
  }

  private deliver(): void {
    if (!this.waiting) return;
    const nl = this.buffer.indexOf('\n');
    if (nl < 0) {
      if (this.failure) this.waiting('');
      return;
    }
    const line = this.buffer.slice(0, nl).replace(/\r$/, '');
    this.buffer = this.buffer.slice(nl + 1);
    this.waiting(line);
  }
}
