/**
 * Where each DMARC evaluation is recorded, so that aggregate reports (RFC 7489 7.2) can be
 * built from the history: the dmarc stage records, a report sender (services/dmarc-reports)
 * takes one policy domain's report period at a time.
 *
 * In the Store (store/store.ts) a record is one JSON item of the list
 * "dmarc:<policy domain>:<period>", the period being the report period the record falls in
 * (lib/dmarc-report/period.ts: `2026-12-06` for a UTC day, `2026-12-06T03Z/1h` for an hour).
 * The period is decided here, when the result is stored, from the `ri=` of the DMARC record
 * the dmarc stage applied (requestedIntervalSec) and `minIntervalSec`: a report covers one
 * list, so a period can be reported and removed without touching the rest of its day, and a
 * sender knows from the key alone when a period is over. A later change of ri= applies to
 * results stored after it (docs/dmarc-reports.md).
 *
 * Each list expires RETENTION_MS after its last append, so an unsent period does not stay for
 * ever, and keeps at most MAX_RECORDS_PER_PERIOD records (the newest), so that a flood of mail
 * claiming one domain cannot grow the store without bound. Per UTC day, over all domains and
 * all processes sharing the store, at most `maxDomainsPerDay` policy domains are kept and
 * `maxRecordsPerDay` records (counters "dmarc-count:domains|records:<day>"; a domain is counted
 * once a day whatever its period, through "dmarc-count:seen:<domain>:<day>"), so that mail
 * claiming thousands of From domains cannot either (main config services.dmarcReports); the
 * first result refused each day is logged. A result without a policy domain (no DMARC record
 * found, or the lookup failed) has no one to report to and is not kept.
 *
 * Fails: record() rejects with STORE_UNAVAILABLE; the dmarc stage logs it and the mail goes on.
 */
import type { Logger } from 'pino';
import { SHORTEST_PERIOD_SEC, periodLengthSec, periodOf } from '../lib/dmarc-report/period';
import { SCAN_MAX_LIMIT, type Store } from './store';

export interface DmarcResultRecord {
  readonly receivedAt: Date;
  /** The client address from XFORWARD, when Postfix passed one. */
  readonly sourceIp?: string;
  readonly headerFrom: string;
  readonly policyDomain?: string;
  readonly policy?: 'none' | 'quarantine' | 'reject';
  readonly result: 'pass' | 'fail' | 'none' | 'temperror' | 'permerror';
  /** What this bank did: the disposition of RFC 7489 aggregate reports. */
  readonly disposition: 'none' | 'quarantine' | 'reject';
  readonly dkim: readonly { readonly domain: string; readonly selector: string; readonly result: string }[];
  readonly spf?: { readonly domain: string; readonly result: string };
  /** `ri=` of the DMARC record the dmarc stage applied (seconds): decides the report period; none is daily. */
  readonly requestedIntervalSec?: number;
}

export interface DmarcResultStore {
  record(r: DmarcResultRecord): Promise<void>;
}

/** 31 days: a report sender that was down for a month still finds the history. */
export const RETENTION_MS = 31 * 24 * 3600 * 1000;
export const MAX_RECORDS_PER_PERIOD = 100000;
const KEY_PREFIX = 'dmarc:';
/** Not below KEY_PREFIX, so that days() does not list the counters. */
const COUNT_PREFIX = 'dmarc-count:';

export interface DmarcResultLimits {
  readonly retentionMs?: number;
  /** Records per policy domain and report period (the newest are kept). */
  readonly maxPerPeriod?: number;
  /** The shortest report period, in seconds (services.dmarcReports.minIntervalSec; default an hour). */
  readonly minIntervalSec?: number;
  /** Policy domains per day, all hosts together. */
  readonly maxDomainsPerDay?: number;
  /** Records per day over all domains, all hosts together. */
  readonly maxRecordsPerDay?: number;
  /** Where the first refused result of a day is logged. */
  readonly log?: Pick<Logger, 'warn'>;
}

/** The UTC day of a time, as YYYY-MM-DD. */
export function utcDay(t: Date): string {
  return t.toISOString().slice(0, 10);
}

function listKey(policyDomain: string, period: string): string {
  return `${KEY_PREFIX}${policyDomain}:${period}`;
}

/** DMARC results in the shared store: one capped list per policy domain and report period. */
export class StoredDmarcResults implements DmarcResultStore {
  private readonly limits: Required<Omit<DmarcResultLimits, 'log'>> & { log?: DmarcResultLimits['log'] };

  constructor(
    private readonly store: Store,
    limits: DmarcResultLimits = {},
  ) {
    this.limits = {
      retentionMs: limits.retentionMs ?? RETENTION_MS,
      maxPerPeriod: limits.maxPerPeriod ?? MAX_RECORDS_PER_PERIOD,
      minIntervalSec: limits.minIntervalSec ?? SHORTEST_PERIOD_SEC,
      maxDomainsPerDay: limits.maxDomainsPerDay ?? Number.MAX_SAFE_INTEGER,
      maxRecordsPerDay: limits.maxRecordsPerDay ?? Number.MAX_SAFE_INTEGER,
      log: limits.log,
    };
  }

  async record(r: DmarcResultRecord): Promise<void> {
    if (!r.policyDomain) return;
    const domain = r.policyDomain.toLowerCase();
    const day = utcDay(r.receivedAt);
    const period = periodOf(r.receivedAt, periodLengthSec(r.requestedIntervalSec, this.limits.minIntervalSec));
    const { retentionMs, maxRecordsPerDay, maxDomainsPerDay } = this.limits;
    const total = await this.store.increment(`${COUNT_PREFIX}records:${day}`, 1, { ttlMs: retentionMs });
    if (total > maxRecordsPerDay) return this.refused(total - maxRecordsPerDay, day, domain, `maxRecordsPerDay (${maxRecordsPerDay})`);
    const key = listKey(domain, period.id);
    const length = await this.store.append(key, JSON.stringify({ ...r, policyDomain: domain, receivedAt: r.receivedAt.toISOString() }), {
      ttlMs: retentionMs,
      maxLength: this.limits.maxPerPeriod,
    });
    if (length !== 1) return;
    // A new domain-period: the domain is counted on its first period of the day, and each of
    // its later periods that day follows that first decision. (Two processes starting two
    // periods of a refused domain at once may keep one of them: the records cap still holds.)
    const seen = `${COUNT_PREFIX}seen:${domain}:${day}`;
    if (await this.store.setIfAbsent(seen, 'kept', { ttlMs: retentionMs })) {
      const domains = await this.store.increment(`${COUNT_PREFIX}domains:${day}`, 1, { ttlMs: retentionMs });
      if (domains <= maxDomainsPerDay) return;
      await this.store.set(seen, 'refused', { ttlMs: retentionMs });
      await this.store.delete(key);
      this.refused(domains - maxDomainsPerDay, day, domain, `maxDomainsPerDay (${maxDomainsPerDay})`);
    } else if ((await this.store.get(seen)) === 'refused') {
      await this.store.delete(key);
    }
  }

  /** Logs the first refusal of a day only (the counters are shared: once for all processes). */
  private refused(nth: number, day: string, policyDomain: string, cap: string): void {
    if (nth === 1)
      this.limits.log?.warn(
        { day, policyDomain, cap },
        `DMARC results not kept: the daily cap services.dmarcReports.${cap} is reached; further results of ${day} are dropped without a log line`,
      );
  }

  /**
   * The policy domains and report periods (period.ts names) that have records, at most `limit`
   * pairs (SCAN_MAX_LIMIT without it: with hourly periods a day can hold many lists, and the
   * finished ones must not be crowded out by those still running).
   */
  async periods(limit = SCAN_MAX_LIMIT): Promise<{ policyDomain: string; period: string }[]> {
    const keys = await this.store.scan(KEY_PREFIX, limit);
    return keys.map((k) => {
      const rest = k.slice(KEY_PREFIX.length);
      const cut = rest.lastIndexOf(':');
      return { policyDomain: rest.slice(0, cut), period: rest.slice(cut + 1) };
    });
  }

  /**
   * Reads one policy domain's records of one period without removing them, for a report sender
   * that removes them (remove) only once its report was accepted. `items` is how many list
   * items were read, valid or not: what remove() takes away.
   */
  async peek(policyDomain: string, period: string, limit?: number): Promise<{ records: DmarcResultRecord[]; items: number }> {
    const items = await this.store.range(listKey(policyDomain.toLowerCase(), period), limit);
    return { records: parseItems(items), items: items.length };
  }

  /**
   * Removes the first `items` records of a list read by peek(): the list is taken atomically and
   * whatever was appended after the peek is appended again, so no record is lost.
   */
  async remove(policyDomain: string, period: string, items: number): Promise<void> {
    const key = listKey(policyDomain.toLowerCase(), period);
    const taken = await this.store.takeAll(key);
    for (const later of taken.slice(items)) await this.store.append(key, later, { ttlMs: this.limits.retentionMs, maxLength: this.limits.maxPerPeriod });
  }

  /**
   * Removes and returns one policy domain's records of one period: a record that arrives
   * meanwhile is left for the next take, never lost. Items that are not valid JSON (written
   * by something else) are skipped.
   */
  async take(policyDomain: string, period: string): Promise<DmarcResultRecord[]> {
    return parseItems(await this.store.takeAll(listKey(policyDomain.toLowerCase(), period)));
  }
}

function parseItems(items: readonly string[]): DmarcResultRecord[] {
  const out: DmarcResultRecord[] = [];
  for (const item of items) {
    try {
      const r = JSON.parse(item) as Omit<DmarcResultRecord, 'receivedAt'> & { receivedAt: string };
      out.push({ ...r, receivedAt: new Date(r.receivedAt) });
    } catch {
      // Not one of ours; see take().
    }
  }
  return out;
}

/**
 * For commands that evaluate a message without keeping history (`postseal verify`,
 * `config print`): their results must not reach the aggregate reports.
 */
export const dmarcResultsNotKept: DmarcResultStore = {
  async record() {},
};
