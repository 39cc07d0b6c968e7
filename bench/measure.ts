/**
 * One throughput figure: smtp-source sends a bounded number of messages, sized so that a run
 * lasts about `seconds`. The count comes from the last rate seen for the same target; a run
 * that ends in under a third of the time is repeated with a count from its own rate, so
 * every figure rests on a run of useful length without knowing the rates beforehand.
 */
import { runSmtpSource, type SourceRun } from './postfix-tools';

export interface ThroughputLoad {
  /** Which rate history to plan from (target and size, not concurrency). */
  key: string;
  port: number;
  file: string;
  from: string;
  to: string;
  concurrency: number;
  reuse: boolean;
}

const MAX_MESSAGES = 100000;

export class Throughput {
  private readonly rates = new Map<string, number>();

  constructor(
    private readonly smtpSource: string,
    private readonly seconds: number,
    private readonly firstGuessMps: (key: string) => number,
  ) {}

  /** The figure's run, and how many messages all runs sent (for CPU time per message). */
  async measure(load: ThroughputLoad): Promise<SourceRun & { messagesSent: number }> {
    let run = await this.once(load, this.rates.get(load.key) ?? this.firstGuessMps(load.key));
    let messagesSent = run.messages;
    if (run.seconds < this.seconds / 3 && run.messages < MAX_MESSAGES) {
      run = await this.once(load, run.mps);
      messagesSent += run.messages;
    }
    this.rates.set(load.key, run.mps);
    return { ...run, messagesSent };
  }

  private once(load: ThroughputLoad, mps: number): Promise<SourceRun> {
    // At least two messages per session, so every session is past its first message.
    const messages = Math.max(2 * load.concurrency, 20, Math.min(MAX_MESSAGES, Math.round(mps * this.seconds)));
    return runSmtpSource(this.smtpSource, { ...load, messages, timeoutMs: Math.max(60000, this.seconds * 40000) });
  }
}
