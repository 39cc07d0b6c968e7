/**
 * The quarantine's expiry as a Service (services/service.ts): at start it creates the folder
 * (mode 0700) and then runs Quarantine.sweep every quarantine.sweepIntervalMs in every worker
 * (each step of a sweep is idempotent, so workers and hosts sharing a folder need no lock).
 *
 * A folder that cannot be created does not stop start-up (most banks never quarantine): it is
 * logged with the fix, and a quarantine verdict is then tempfailed with its own log line.
 * A failed sweep is logged and tried again at the next interval.
 */
import type { Logger } from '../lib/log';
import type { Service } from '../services/service';
import type { LoadedConfig } from '../setup';
import { ensureFolder } from './folder';
import type { Quarantine } from './quarantine';

export class QuarantineSweeper implements Service {
  readonly name = 'quarantine';
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private quarantine: Quarantine,
    private readonly make: (config: LoadedConfig) => Quarantine,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    await this.prepare();
    this.schedule();
  }

  async reload(config: LoadedConfig): Promise<void> {
    this.quarantine = this.make(config);
    await this.prepare();
    this.schedule();
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** One sweep now (tests, and the timer). */
  async sweepNow(): Promise<void> {
    if (this.running) return this.running;
    this.running = this.quarantine
      .sweep()
      .then(
        (counts) => {
          if (counts.expired || counts.leftovers || counts.restored || counts.dropped) this.log.info({ quarantineDir: this.quarantine.dir, ...counts }, 'quarantine swept');
        },
        (err) => this.log.warn({ err, quarantineDir: this.quarantine.dir }, 'quarantine sweep failed; tried again at the next interval'),
      )
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  private async prepare(): Promise<void> {
    await ensureFolder(this.quarantine.dir).catch((err: Error) =>
      this.log.warn(
        { quarantineDir: this.quarantine.dir, reason: err.message },
        `the quarantine folder ${this.quarantine.dir} cannot be created; mail with a quarantine verdict will be tempfailed until it exists (mkdir -m 700, owned by the user postseal runs as, or set quarantine.dir)`,
      ),
    );
  }

  private schedule(): void {
    clearInterval(this.timer);
    this.timer = setInterval(() => void this.sweepNow(), this.quarantine.settings.sweepIntervalMs);
    this.timer.unref();
  }
}
