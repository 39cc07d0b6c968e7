/**
 * A process-wide budget of bytes for unpacking (ByteBudget): every buffer the banned stage
 * holds whole (a decoded MIME part to walk into, an inflated inner archive) is reserved here
 * first and released when the walk into it is done, so concurrency cannot multiply the
 * per-message caps: 4 messages of zips of 30 MiB zips took ~300 MiB at once before this.
 *
 * A reservation waits its turn (first come, first served, so a big one is not starved by
 * small ones) for at most `waitMs`; then it fails and the caller marks the part `busy`, which
 * the banned stage answers with a tempfail (Postfix retries; an unchecked delivery would let a
 * flood of big messages through unchecked). A request larger than the whole budget is
 * clamped to it. A reservation made while holding one (`nested`) goes first. The caller's
 * signal ends the wait (its reason rejects).
 */

export interface Lease {
  release(): void;
}

interface Waiter {
  readonly bytes: number;
  grant(): void;
}

export class ByteBudget {
  private used = 0;
  /** The most reserved at once so far (for tests and logs). */
  peak = 0;
  private readonly waiters: Waiter[] = [];

  constructor(
    readonly capacity: number,
    readonly waitMs: number,
  ) {}

  /** Bytes reserved now (for tests and logs). */
  get inUse(): number {
    return this.used;
  }

  /**
   * A lease on `bytes`, or null when none came within `waitMs`. `nested`: the caller already
   * holds a lease (an inner archive of an outer one it holds); it goes before new messages, or
   * a message holding its outer archive would wait behind messages waiting for it.
   */
  async reserve(bytes: number, signal: AbortSignal, nested = false): Promise<Lease | null> {
    signal.throwIfAborted();
    const n = Math.max(0, Math.min(bytes, this.capacity));
    if ((nested || this.waiters.length === 0) && this.used + n <= this.capacity) return this.lease(n);
    return new Promise<Lease | null>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        const at = this.waiters.indexOf(waiter);
        if (at >= 0) this.waiters.splice(at, 1);
      };
      const waiter: Waiter = {
        bytes: n,
        grant: () => {
          done();
          resolve(this.lease(n));
        },
      };
      const timer = setTimeout(() => {
        done();
        resolve(null);
        this.wake();
      }, this.waitMs);
      const onAbort = () => {
        done();
        reject(signal.reason);
        this.wake();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      if (nested) this.waiters.unshift(waiter);
      else this.waiters.push(waiter);
    });
  }

  /** A lease on `bytes` if they fit now, else null: for a reader that cannot wait (past-cap.ts, as an archive streams past). */
  tryReserve(bytes: number): Lease | null {
    const n = Math.max(0, Math.min(bytes, this.capacity));
    return this.used + n <= this.capacity ? this.lease(n) : null;
  }

  private lease(n: number): Lease {
    this.used += n;
    this.peak = Math.max(this.peak, this.used);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.used -= n;
        this.wake();
      },
    };
  }

  /** Grants waiting reservations in order while they fit. */
  private wake(): void {
    while (this.waiters.length && this.used + this.waiters[0].bytes <= this.capacity) this.waiters[0].grant();
  }
}
