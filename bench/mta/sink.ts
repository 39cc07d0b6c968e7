/**
 * The whole-MTA benchmark's downstream: Postfix's smtp-sink with its running counter (-c),
 * so a run ends when the sink has the messages, not when smtp-source has handed them to
 * Postfix (which queues them and delivers later). With `dumpFile` it also keeps every
 * message (-D), for the DKIM checks before timing; that is slow, so timed runs go to a
 * sink without it.
 */
import { spawnSmtpSink, stopChild } from '../postfix-tools';

export interface CountingSink {
  /** Messages received so far (each final "."). */
  readonly count: number;
  /** Resolves with process.hrtime.bigint() at the moment the count reached `n`. */
  reached(n: number, timeoutMs: number): Promise<bigint>;
  stop(): Promise<void>;
}

export async function startCountingSink(bin: string, port: number, dumpFile?: string): Promise<CountingSink> {
  const { child, exited } = await spawnSmtpSink(bin, port, { dumpFile, extra: ['-c'] });
  let count = 0;
  const waiters = new Set<{ n: number; resolve: (t: bigint) => void }>();
  // -c rewrites one status line ("sess=3 quit=2 mesg=5\r") after every session end, QUIT and ".".
  child.stdout!.on('data', (d: Buffer) => {
    const all = [...d.toString('latin1').matchAll(/mesg=(\d+)/g)];
    if (!all.length) return;
    count = Number(all[all.length - 1][1]);
    const now = process.hrtime.bigint();
    for (const w of waiters) {
      if (count < w.n) continue;
      waiters.delete(w);
      w.resolve(now);
    }
  });
  return {
    get count() {
      return count;
    },
    reached(n, timeoutMs) {
      if (count >= n) return Promise.resolve(process.hrtime.bigint());
      return new Promise((resolve, reject) => {
        const waiter = {
          n,
          resolve: (t: bigint) => {
            clearTimeout(timer);
            resolve(t);
          },
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`the sink had ${count} of ${n} messages after ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(waiter);
      });
    },
    stop: () => stopChild(child, exited),
  };
}
