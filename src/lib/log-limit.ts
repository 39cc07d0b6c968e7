/**
 * At most one log line per interval for a failure that repeats with every message (a store
 * whose disk is full fails each DMARC record and greylisting write): the postmaster reads one
 * line a minute saying how many were left out, not thousands. The first failure is always
 * written at once.
 */

export class LogLimit {
  private last = Number.NEGATIVE_INFINITY;
  private held = 0;

  constructor(
    private readonly intervalMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * The number of lines held back since the last one written, when a line may be written now
   * (the caller writes it, with that number); undefined when this one is held back.
   */
  take(): number | undefined {
    const t = this.now();
    // A clock set back (Date.now after an NTP step) starts a new interval: compared as it is,
    // the negative difference held every line back until the clock had caught up again.
    if (t >= this.last && t - this.last < this.intervalMs) {
      this.held++;
      return undefined;
    }
    const held = this.held;
    this.last = t;
    this.held = 0;
    return held;
  }
}

/** A failure that repeats per message is logged at most this often. */
export const REPEATED_FAILURE_LOG_MS = 60_000;
