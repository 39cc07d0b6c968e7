/**
 * Where each DMARC evaluation is recorded, so that aggregate reports (RFC 7489 7.2) can be
 * built from the history: the dmarc stage records, a report sender (a later service) takes
 * one policy domain's day at a time.
 *
 * In the Store (store/store.ts) a record is one JSON item of the list
 * "dmarc:<policy domain>:<UTC day YYYY-MM-DD>": reports cover UTC days (RFC 7489 7.2.1.1).
 * Each list expires RETENTION_MS after its last append, so an unsent day does not stay for
 * ever, and keeps at most MAX_RECORDS_PER_DAY records (the newest), so that a flood of mail
 * claiming one domain cannot grow the store without bound. Per UTC day, over all domains and
 * all processes sharing the store, at most `maxDomainsPerDay` lists are started and
 * `maxRecordsPerDay` records kept (counters "dmarc-count:domains|records:<day>"), so that mail
 * claiming thousands of From domains cannot either (main config services.dmarcReports); the
 * first result refused each day is logged. A result without a policy domain (no DMARC record
 * found, or the lookup failed) has no one to report to and is not kept.
 *
 * Fails: record() rejects with STORE_UNAVAILABLE; the dmarc stage logs it and the mail goes on.
 */
import type { Logger } from 'pino';
import type { Store } from './store';

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
}

export interface DmarcResultStore {
  record(r: DmarcResultRecord): Promise<void>;
}

/** 31 days: a report sender that was down for a month still finds the history. */
export const RETENTION_MS = 31 * 24 * 3600 * 1000;
export const MAX_RECORDS_PER_DAY = 100000;
const KEY_PREFIX = 'dmarc:';
/** Not below KEY_PREFIX, so that days() does not list the counters. */
const COUNT_PREFIX = 'dmarc-count:';

export interface DmarcResultLimits {
  readonly retentionMs?: number;
  /** Records per policy domain and day (the newest are kept). */
  readonly maxPerDay?: number;
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

function listKey(policyDomain: string, day: string): string {
  return `${KEY_PREFIX}${policyDomain}:${day}`;
}

/** DMARC results in the shared store: one capped list per policy domain and UTC day. */
export class StoredDmarcResults implements DmarcResultStore {
  private readonly limits: Required<Omit<DmarcResultLimits, 'log'>> & { log?: DmarcResultLimits['log'] };

  constructor(
    private readonly store: Store,
    limits: DmarcResultLimits = {},
  ) {
    this.limits = {
      retentionMs: limits.retentionMs ?? RETENTION_MS,
      maxPerDay: limits.maxPerDay ?? MAX_RECORDS_PER_DAY,
      maxDomainsPerDay: limits.maxDomainsPerDay ?? Number.MAX_SAFE_INTEGER,
      maxRecordsPerDay: limits.maxRecordsPerDay ?? Number.MAX_SAFE_INTEGER,
      log: limits.log,
    };
  }

  async record(r: DmarcResultRecord): Promise<void> {
    if (!r.policyDomain) return;
    const domain = r.policyDomain.toLowerCase();
    const day = utcDay(r.receivedAt);
    const { retentionMs, maxRecordsPerDay, maxDomainsPerDay } = this.limits;
    const total = await this.store.increment(`${COUNT_PREFIX}records:${day}`, 1, { ttlMs: retentionMs });
    if (total > maxRecordsPerDay) return this.refused(total - maxRecordsPerDay, day, domain, `maxRecordsPerDay (${maxRecordsPerDay})`);
    const key = listKey(domain, day);
    const length = await this.store.append(key, JSON.stringify({ ...r, policyDomain: domain, receivedAt: r.receivedAt.toISOString() }), {
      ttlMs: retentionMs,
      maxLength: this.limits.maxPerDay,
    });
    if (length !== 1) return;
    // A new domain-day: counted, and taken back when over the cap.
    const domains = await this.store.increment(`${COUNT_PREFIX}domains:${day}`, 1, { ttlMs: retentionMs });
    if (domains > maxDomainsPerDay) {
      await this.store.delete(key);
      this.refused(domains - maxDomainsPerDay, day, domain, `maxDomainsPerDay (${maxDomainsPerDay})`);
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

  /** The policy domains and days that have records (at most `limit` pairs), for a report sender. */
  async days(limit?: number): Promise<{ policyDomain: string; day: string }[]> {
    const keys = await this.store.scan(KEY_PREFIX, limit);
    return keys.map((k) => {
      const rest = k.slice(KEY_PREFIX.length);
      const cut = rest.lastIndexOf(':');
      return { policyDomain: rest.slice(0, cut), day: rest.slice(cut + 1) };
    });
  }

  /**
   * Reads one policy domain's records of one day without removing them, for a report sender
   * that removes them (remove) only once its report was accepted. `items` is how many list
   * items were read, valid or not: what remove() takes away.
   */
  async peek(policyDomain: string, day: string, limit?: number): Promise<{ records: DmarcResultRecord[]; items: number }> {
    const items = await this.store.range(listKey(policyDomain.toLowerCase(), day), limit);
    return { records: parseItems(items), items: items.length };
  }

  /**
   * Removes the first `items` records of a list read by peek(): the list is taken atomically and
   * whatever was appended after the peek is appended again, so no record is lost.
   */
  async remove(policyDomain: string, day: string, items: number): Promise<void> {
    const key = listKey(policyDomain.toLowerCase(), day);
    const taken = await this.store.takeAll(key);
    for (const later of taken.slice(items)) await this.store.append(key, later, { ttlMs: this.limits.retentionMs, maxLength: this.limits.maxPerDay });
  }

  /**
   * Removes and returns one policy domain's records of one day: a record that arrives
   * meanwhile is left for the next take, never lost. Items that are not valid JSON (written
   * by something else) are skipped.
   */
  async take(policyDomain: string, day: string): Promise<DmarcResultRecord[]> {
    return parseItems(await this.store.takeAll(listKey(policyDomain.toLowerCase(), day)));
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
