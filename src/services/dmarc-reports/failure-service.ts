/**
 * DMARC failure reports as a Service (services/service.ts): the queue and sender of
 * failures.ts with a downstream pool to the notify target of `services.dmarcReports.bank`, and
 * the signing keys of `services.dmarcReports.from`'s domain, as for aggregate reports
 * (service.ts reportSettingsFor). main.ts makes it when
 * `services.dmarcReports.failureReports.enabled` and hands it to the stages as their
 * `dmarcFailures` sink (setup.ts SharedDeps).
 *
 * Fails at start and reload with CFG_INCONSISTENT when the bank is missing or has no notify
 * target (reportSettingsFor). Close waits for the queued reports to be sent or dropped, with
 * DNS lookups cut short (failures.ts close()).
 */
import type { Logger } from 'pino';
import type { DmarcFailureSink, FailureSample } from '../../lib/dmarc-report/failure';
import type { DnsResolver } from '../../lib/dns';
import { DownstreamPool } from '../../reinject/pool';
import type { LoadedConfig } from '../../setup';
import type { Store } from '../../store/store';
import type { Service } from '../service';
import { FailureReporter, type FailureDeps, type FailureOutcome, type FailureSettings } from './failures';
import { poolSender } from '../../notify/send';
import { reportSettingsFor } from './service';
import { reportSigner } from '../../notify/sign';

export interface DmarcFailureReportsDeps {
  readonly store: Store;
  /** Read at every report: a reload may have remade the resolver. */
  readonly resolver: DnsResolver;
  readonly log: Logger;
  readonly now?: () => Date;
  readonly onOutcome?: (o: FailureOutcome) => void;
}

function failureSettingsFor(config: LoadedConfig) {
  const { settings, target, keys } = reportSettingsFor(config);
  const f = config.main.services.dmarcReports.failureReports;
  const failure: FailureSettings = {
    from: settings.from,
    submitter: settings.submitter,
    maxPerDomainPerHour: f.maxPerDomainPerHour,
    maxPerHour: f.maxPerHour,
    maxQueued: f.maxQueued,
    redactLocalParts: f.redactLocalParts,
    maxHeaderBytes: f.maxHeaderBytes,
  };
  return { failure, target, keys };
}

export class DmarcFailureReportsService implements Service, DmarcFailureSink {
  readonly name = 'dmarc-failure-reports';
  private pool: DownstreamPool;
  private readonly reporter: FailureReporter;
  /** A reload can switch reports off (samples are then ignored), not on (main.ts). */
  private enabled = true;

  constructor(
    private config: LoadedConfig,
    private readonly deps: DmarcFailureReportsDeps,
  ) {
    const { failure, target, keys } = failureSettingsFor(config);
    this.pool = new DownstreamPool(target, config.hostname, deps.log);
    this.reporter = new FailureReporter(this.reporterDeps(keys), failure, deps.onOutcome);
  }

  private reporterDeps(keys: ReturnType<typeof failureSettingsFor>['keys']): FailureDeps {
    const d = this.deps;
    const now = d.now ?? (() => new Date());
    return {
      store: d.store,
      get resolver() {
        return d.resolver;
      },
      send: poolSender(this.pool),
      sign: reportSigner(keys, now),
      log: d.log,
      now,
    };
  }

  offer(sample: FailureSample): void {
    if (this.enabled) this.reporter.offer(sample);
  }

  /** Resolves when every queued report was sent or dropped. */
  idle(): Promise<void> {
    return this.reporter.idle();
  }

  async start(): Promise<void> {}

  async reload(config: LoadedConfig): Promise<void> {
    const { failure, target, keys } = failureSettingsFor(config);
    if (JSON.stringify(target) !== JSON.stringify(this.pool.target) || config.hostname !== this.config.hostname) {
      const old = this.pool;
      this.pool = new DownstreamPool(target, config.hostname, this.deps.log);
      void this.reporter.idle().then(() => old.close());
    }
    this.config = config;
    this.enabled = config.main.services.dmarcReports.failureReports.enabled;
    this.reporter.update(this.reporterDeps(keys), failure);
  }

  async close(): Promise<void> {
    // Queued reports are sent, but without waiting on DNS (failures.ts close()).
    await this.reporter.close();
    await this.pool.close();
  }
}
