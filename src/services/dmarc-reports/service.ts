/**
 * The DMARC aggregate report sender as a Service (services/service.ts): a timer that runs a
 * report pass (run.ts) every `services.dmarcReports.checkIntervalMs`, the first one at start.
 *
 * It runs in every worker of every host: which process sends a given report is decided in the
 * shared store (run.ts: a lock per domain and report period, records removed after the send),
 * so workers and hosts on one Redis produce one report per domain and period. Passes never overlap in one
 * process; close() ends a pass in flight after its current domain-period (run.ts RunOptions.signal).
 *
 * Reads main config `services.dmarcReports` and `hostname`, and the bank key `notify` of the
 * bank it names. Fails at start and reload with CFG_INCONSISTENT when that bank is missing or
 * has no `notify` target; warns (start, reload) when no signing key exists for the `from`
 * domain; a pass that fails (store down) is logged and tried at the next tick.
 */
import os from 'node:os';
import type { Logger } from 'pino';
import { PostsealError } from '../../errors';
import type { DnsResolver } from '../../lib/dns';
import { DownstreamPool } from '../../reinject/pool';
import type { SigningKey } from '../../keys/key-store';
import type { LoadedConfig } from '../../setup';
import type { StoredDmarcResults } from '../../store/dmarc-results';
import type { Store } from '../../store/store';
import type { Service } from '../service';
import { runReports, type ReportSettings } from './run';
import { poolSender } from '../../notify/send';
import { reportSigner } from '../../notify/sign';

export interface DmarcReportsDeps {
  readonly store: Store;
  readonly results: StoredDmarcResults;
  /** Read at every pass: a reload may have remade the resolver. */
  readonly resolver: DnsResolver;
  readonly log: Logger;
  readonly now?: () => Date;
}

/** The report settings and notify target a configuration gives; throws CFG_INCONSISTENT. */
export function reportSettingsFor(config: LoadedConfig): {
  settings: ReportSettings;
  target: NonNullable<ReturnType<typeof notifyOf>>;
  /** The signing table's active keys for the domain of `from` (sign.ts); none: unsigned. */
  keys: readonly SigningKey[];
} {
  const c = config.main.services.dmarcReports;
  const target = notifyOf(config, c.bank);
  if (!target) {
    throw new PostsealError(
      'CFG_INCONSISTENT',
      `services.dmarcReports.bank: bank "${c.bank}" ${config.banks.has(c.bank) ? 'has no notify target' : 'does not exist'}; DMARC reports are sent through a bank's notify target`,
    );
  }
  const from = c.from || `dmarc-reports@${config.hostname}`;
  const fromDomain = from.slice(from.lastIndexOf('@') + 1);
  return {
    settings: {
      orgName: c.orgName || config.hostname,
      email: c.email || from,
      from,
      submitter: c.submitter || fromDomain,
      lockTtlMs: c.lockTtlMs,
      retryBaseMs: c.retryBaseMs,
      retryMaxMs: c.retryMaxMs,
      maxReportsPerRun: c.maxReportsPerRun,
      graceSec: c.graceSec,
      maxAttempts: c.maxAttempts,
      maxRowsPerReport: c.maxRowsPerReport,
      maxReportsPerDestinationPerDay: c.maxReportsPerDestinationPerDay,
    },
    target,
    keys: config.keys.forAuthor(fromDomain.toLowerCase()),
  };
}

function notifyOf(config: LoadedConfig, bank: string) {
  return config.banks.get(bank)?.notify;
}

export class DmarcReportsService implements Service {
  readonly name = 'dmarc-reports';
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  /** Aborted by close(): a pass in flight stops after its current domain-period (run.ts RunOptions.signal). */
  private readonly stopping = new AbortController();
  private pool: DownstreamPool;
  private settings: ReportSettings;
  private keys: readonly SigningKey[];
  private intervalMs: number;
  private readonly owner = `${os.hostname()}:${process.pid}`;

  constructor(
    private config: LoadedConfig,
    private readonly deps: DmarcReportsDeps,
  ) {
    const { settings, target, keys } = reportSettingsFor(config);
    this.settings = settings;
    this.keys = keys;
    this.intervalMs = config.main.services.dmarcReports.checkIntervalMs;
    this.pool = new DownstreamPool(target, config.hostname, deps.log);
    this.warnUnsigned();
  }

  /**
   * Unsigned reports fail DMARC at receivers that check it (and many drop them): said at start
   * and reload rather than refused, as a set-up may sign them further down (a signing milter).
   */
  private warnUnsigned(): void {
    if (this.keys.length) return;
    this.deps.log.warn(
      { from: this.settings.from },
      `no DKIM key for report mail: DMARC aggregate reports go out unsigned, as the signing table has no active key for the domain of ${this.settings.from} (services.dmarcReports.from); receivers that check DMARC may drop them unless something further down signs them`,
    );
  }

  async start(): Promise<void> {
    this.schedule(0);
  }

  async reload(config: LoadedConfig): Promise<void> {
    const { settings, target, keys } = reportSettingsFor(config);
    if (JSON.stringify(target) !== JSON.stringify(this.pool.target) || config.hostname !== this.config.hostname) {
      const old = this.pool;
      this.pool = new DownstreamPool(target, config.hostname, this.deps.log);
      void old.close();
    }
    this.config = config;
    this.settings = settings;
    this.keys = keys;
    this.intervalMs = config.main.services.dmarcReports.checkIntervalMs;
    this.warnUnsigned();
  }

  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    // A pass can take long (many domains whose DNS times out): a stop does not wait for all of it.
    this.stopping.abort();
    await this.running;
    await this.pool.close();
  }

  /** One pass now (the tests' and the timer's entry). */
  async runOnce(): Promise<void> {
    if (this.running) return this.running;
    if (this.stopping.signal.aborted) return;
    this.running = (async () => {
      try {
        const d = this.deps;
        const now = d.now ?? (() => new Date());
        const out = await runReports(
          { store: d.store, results: d.results, resolver: d.resolver, send: poolSender(this.pool), now, owner: this.owner, sign: reportSigner(this.keys, now) },
          this.settings,
          { signal: this.stopping.signal },
        );
        for (const o of out) {
          if (o.status === 'locked' || o.status === 'waiting' || o.status === 'empty') continue;
          const line = { policyDomain: o.policyDomain, period: o.period, status: o.status, messages: o.messages, to: o.to, reason: o.reason };
          if (o.status === 'sent') d.log.info(line, 'DMARC aggregate report sent');
          else if (o.status === 'given-up') d.log.error(line, 'DMARC aggregate report given up; its records are dropped');
          else if (o.status === 'already-sent') d.log.info(line, 'DMARC aggregate report was sent before; its records are removed now');
          else d.log.warn(line, 'DMARC aggregate report not sent');
        }
      } catch (err) {
        this.deps.log.error({ err, code: (err as { code?: unknown }).code }, 'DMARC report pass failed; trying again at the next tick');
      } finally {
        this.running = null;
      }
    })();
    return this.running;
  }

  private schedule(delayMs: number): void {
    this.timer = setTimeout(() => {
      void this.runOnce().then(() => {
        if (this.timer) this.schedule(this.intervalMs);
      });
    }, delayMs);
    this.timer.unref();
  }
}
