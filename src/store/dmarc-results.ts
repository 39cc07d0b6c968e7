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
 * Bounds (an attacker controls every field of a record but the source IP):
 * - a record is at most MAX_RECORD_CHARS: domains are cut to 253 characters, selectors to 63,
 *   at most MAX_STORED_SIGNATURES DKIM results (the dmarc stage stores verified ones only);
 * - each list expires RETENTION_MS after its last append, and keeps at most `maxPerPeriod`
 *   records: the first ones. Later ones are only counted ("dmarc-count:over:<domain>:<period>")
 *   and the report says how many messages it does not itemize, so a flood of forged mail
 *   arriving after a domain's real mail cannot push the real records out;
 * - per UTC day, over all processes sharing the store, at most `maxDomainsPerDay`
 *   organizational domains (RFC 7489 3.2, the public suffix list through tldts; counters
 *   "dmarc-count:domains:<day>" and "dmarc-count:seen:<org domain>:<day>"), and per
 *   organizational domain at most `maxPeriodsPerOrgDomain` domain-periods a day
 *   ("dmarc-count:org:<org domain>:<day>"), so that one attacker's ten thousand subdomains use
 *   up their own organizational domain's share only; and `maxRecordsPerDay` records. The first
 *   result refused each day by a cap is logged.
 * A result without a policy domain (no DMARC record found, or the lookup failed) has no one to
 * report to and is not kept.
 *
 * Pending index (what the sender reads, oldest first): when a domain-period gets its first
 * record, "<domain> <period>" is appended to the list "dmarc-due:<UTC day of the period>".
 * periods() reads those day lists oldest day first (there are at most ~32 of them), so
 * finished periods are never crowded out by running ones; prune() drops entries whose records
 * are gone.
 *
 * A message Postfix retries (a later stage tempfailed it) is recorded once: record() takes a
 * retry-stable id (RecordOptions.once).
 *
 * Fails: record() rejects with STORE_UNAVAILABLE; the dmarc stage logs it and the mail goes on.
 */
import type { Logger } from 'pino';
import { SHORTEST_PERIOD_SEC, periodLengthSec, periodOf } from '../lib/dmarc-report/period';
import { orgDomain } from '../lib/dmarc-report/policy';
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
  readonly spf?: { readonly domain: string; readonly result: string; readonly scope?: 'mfrom' | 'helo' };
  /**
   * Why the disposition differs from the published policy (RFC 7489 appendix C
   * PolicyOverrideType): local_policy when the bank does less than p= asks (tags instead of
   * rejecting), sampled_out when pct= exempted the message.
   */
  readonly override?: 'local_policy' | 'sampled_out';
  /** DMARC alignment as the dmarc stage judged it (RFC 7489 7.2.1.1 policy_evaluated); older records lack it. */
  readonly dkimAligned?: boolean;
  readonly spfAligned?: boolean;
  /** `ri=` of the DMARC record the dmarc stage applied (seconds): decides the report period; none is daily. */
  readonly requestedIntervalSec?: number;
}

export interface RecordOptions {
  /**
   * Identifies the delivery attempt's message across Postfix retries (dmarc stage: a digest of
   * the queue ID, envelope, client and Message-ID): a result recorded under it before is not
   * recorded again for DEDUPE_MS ("dmarc-seen:<id>"), so a message tempfailed by a later stage
   * and retried counts once.
   */
  readonly once?: string;
}

export interface DmarcResultStore {
  record(r: DmarcResultRecord, opts?: RecordOptions): Promise<void>;
}

/** Postfix's default maximal_queue_lifetime: how long a retried message is recognized. */
export const DEDUPE_MS = 5 * 24 * 3600 * 1000;

/** 31 days: a report sender that was down for a month still finds the history. */
export const RETENTION_MS = 31 * 24 * 3600 * 1000;
export const MAX_RECORDS_PER_PERIOD = 100000;
/** Domain-periods per organizational domain and UTC day (services.dmarcReports.maxPeriodsPerOrgDomain). */
export const MAX_PERIODS_PER_ORG_DOMAIN = 200;
/** DKIM results kept per record: the dmarc stage stores only the signatures it verified. */
export const MAX_STORED_SIGNATURES = 10;
/** The longest stored record, in JSON characters: a record past it loses DKIM results. */
export const MAX_RECORD_CHARS = 2048;
const KEY_PREFIX = 'dmarc:';
const DUE_PREFIX = 'dmarc-due:';
/** Not below KEY_PREFIX, so that days() does not list the counters. */
const COUNT_PREFIX = 'dmarc-count:';

export interface DmarcResultLimits {
  readonly retentionMs?: number;
  /** Records per policy domain and report period (the first are kept, later ones only counted). */
  readonly maxPerPeriod?: number;
  /** The shortest report period, in seconds (services.dmarcReports.minIntervalSec; default an hour). */
  readonly minIntervalSec?: number;
  /** Organizational domains per day, all hosts together. */
  readonly maxDomainsPerDay?: number;
  /** Domain-periods per organizational domain and day, all hosts together. */
  readonly maxPeriodsPerOrgDomain?: number;
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
      maxPeriodsPerOrgDomain: limits.maxPeriodsPerOrgDomain ?? MAX_PERIODS_PER_ORG_DOMAIN,
      maxRecordsPerDay: limits.maxRecordsPerDay ?? Number.MAX_SAFE_INTEGER,
      log: limits.log,
    };
  }

  async record(r: DmarcResultRecord, opts: RecordOptions = {}): Promise<void> {
    if (!r.policyDomain) return;
    if (opts.once !== undefined && !(await this.store.setIfAbsent(`dmarc-seen:${opts.once}`, '1', { ttlMs: DEDUPE_MS }))) return;
    const domain = r.policyDomain.toLowerCase();
    const org = orgDomain(domain);
    const day = utcDay(r.receivedAt);
    const period = periodOf(r.receivedAt, periodLengthSec(r.requestedIntervalSec, this.limits.minIntervalSec));
    const { retentionMs, maxRecordsPerDay, maxDomainsPerDay, maxPeriodsPerOrgDomain, maxPerPeriod } = this.limits;
    const ttl = { ttlMs: retentionMs };
    const total = await this.store.increment(`${COUNT_PREFIX}records:${day}`, 1, ttl);
    if (total > maxRecordsPerDay) return this.refused(total - maxRecordsPerDay, day, domain, `maxRecordsPerDay (${maxRecordsPerDay})`);
    const key = listKey(domain, period.id);
    // The first maxPerPeriod records are kept, later ones counted (remove() gives the room back).
    const n = await this.store.increment(`${COUNT_PREFIX}period:${domain}:${period.id}`, 1, ttl);
    if (n > maxPerPeriod) {
      await this.store.increment(`${COUNT_PREFIX}over:${domain}:${period.id}`, 1, ttl);
      return;
    }
    const length = await this.store.append(key, compact(r, domain), { ttlMs: retentionMs, maxLength: maxPerPeriod });
    if (length !== 1) return;
    // A new domain-period: the organizational domain is counted on its first one of the day,
    // and each later one that day follows that first decision. (Two processes starting two
    // periods of a refused domain at once may keep one of them: the records cap still holds.)
    const seen = `${COUNT_PREFIX}seen:${org}:${day}`;
    if (await this.store.setIfAbsent(seen, 'kept', ttl)) {
      const domains = await this.store.increment(`${COUNT_PREFIX}domains:${day}`, 1, ttl);
      if (domains > maxDomainsPerDay) {
        await this.store.set(seen, 'refused', ttl);
        await this.store.delete(key);
        return this.refused(domains - maxDomainsPerDay, day, domain, `maxDomainsPerDay (${maxDomainsPerDay})`);
      }
    } else if ((await this.store.get(seen)) === 'refused') {
      await this.store.delete(key);
      return;
    }
    const periods = await this.store.increment(`${COUNT_PREFIX}org:${org}:${day}`, 1, ttl);
    if (periods > maxPeriodsPerOrgDomain) {
      await this.store.delete(key);
      return this.refused(periods - maxPeriodsPerOrgDomain, day, domain, `maxPeriodsPerOrgDomain (${maxPeriodsPerOrgDomain}) for ${org}`);
    }
    await this.store.append(`${DUE_PREFIX}${utcDay(new Date(period.begin * 1000))}`, `${domain} ${period.id}`, ttl);
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
   * The policy domains and report periods (period.ts names) that have records, oldest day first
   * (the pending index), at most `limit` pairs. An entry whose records are gone may still be
   * listed until prune() drops it: peek() then finds nothing.
   */
  async periods(limit = SCAN_MAX_LIMIT): Promise<{ policyDomain: string; period: string }[]> {
    // One list per UTC day of period: a few dozen keys at most, sorted here.
    const days = (await this.store.scan(DUE_PREFIX, SCAN_MAX_LIMIT)).map((k) => k.slice(DUE_PREFIX.length)).sort();
    const out: { policyDomain: string; period: string }[] = [];
    const seen = new Set<string>();
    for (const day of days) {
      for (const item of await this.store.range(DUE_PREFIX + day, SCAN_MAX_LIMIT)) {
        const cut = item.indexOf(' ');
        if (cut <= 0 || seen.has(item)) continue;
        seen.add(item);
        out.push({ policyDomain: item.slice(0, cut), period: item.slice(cut + 1) });
        if (out.length >= limit) return out;
      }
    }
    return out;
  }

  /**
   * Drops from the pending index the given domain-periods whose records are gone (reported or
   * dropped), and duplicates. The day's list is taken and the rest appended again: an entry
   * appended meanwhile lands in the taken list or the new one, never lost.
   */
  async prune(done: readonly { policyDomain: string; period: string }[]): Promise<void> {
    const byDay = new Map<string, Set<string>>();
    for (const d of done) {
      const day = d.period.slice(0, 10);
      const set = byDay.get(day) ?? new Set<string>();
      set.add(`${d.policyDomain} ${d.period}`);
      byDay.set(day, set);
    }
    for (const [day, drop] of byDay) {
      const key = DUE_PREFIX + day;
      const kept = new Set<string>();
      for (const item of await this.store.takeAll(key)) {
        if (kept.has(item)) continue;
        const cut = item.indexOf(' ');
        if (cut <= 0) continue;
        if (drop.has(item) && (await this.store.range(listKey(item.slice(0, cut), item.slice(cut + 1)), 1)).length === 0) continue;
        kept.add(item);
        await this.store.append(key, item, { ttlMs: this.limits.retentionMs });
      }
    }
  }

  /**
   * Reads one policy domain's records of one period without removing them, for a report sender
   * that removes them (remove) only once its report was accepted. `items` is how many list
   * items were read, valid or not: what remove() takes away; `over` how many messages of the
   * period were counted but not stored (past maxPerPeriod).
   */
  async peek(policyDomain: string, period: string, limit?: number): Promise<{ records: DmarcResultRecord[]; items: number; over: number }> {
    const domain = policyDomain.toLowerCase();
    const items = await this.store.range(listKey(domain, period), limit);
    const over = Math.max(0, Number(await this.store.get(`${COUNT_PREFIX}over:${domain}:${period}`)) || 0);
    return { records: parseItems(items), items: items.length, over };
  }

  /**
   * Removes the first `items` records of a list read by peek() (and `over` of its uncounted
   * messages): the list is taken atomically and whatever was appended after the peek is
   * appended again, so no record is lost.
   */
  async remove(policyDomain: string, period: string, items: number, over = 0): Promise<void> {
    const domain = policyDomain.toLowerCase();
    const key = listKey(domain, period);
    const taken = await this.store.takeAll(key);
    for (const later of taken.slice(items)) await this.store.append(key, later, { ttlMs: this.limits.retentionMs, maxLength: this.limits.maxPerPeriod });
    const ttl = { ttlMs: this.limits.retentionMs };
    if (items) await this.store.increment(`${COUNT_PREFIX}period:${domain}:${period}`, -Math.min(items, taken.length), ttl);
    if (over) await this.store.increment(`${COUNT_PREFIX}over:${domain}:${period}`, -over, ttl);
  }

  /**
   * Removes and returns one policy domain's records of one period: a record that arrives
   * meanwhile is left for the next take, never lost. Items that are not valid JSON (written
   * by something else) are skipped.
   */
  async take(policyDomain: string, period: string): Promise<DmarcResultRecord[]> {
    const domain = policyDomain.toLowerCase();
    const taken = await this.store.takeAll(listKey(domain, period));
    if (taken.length) await this.store.increment(`${COUNT_PREFIX}period:${domain}:${period}`, -taken.length, { ttlMs: this.limits.retentionMs });
    await this.prune([{ policyDomain: domain, period }]);
    return parseItems(taken);
  }
}

const cut = (s: string, max: number) => (s.length > max ? s.slice(0, max) : s);

/**
 * The record as stored: domains at most 253 characters, selectors 63, at most
 * MAX_STORED_SIGNATURES DKIM results, and DKIM results dropped from the end until the JSON is
 * at most MAX_RECORD_CHARS (whatever the caller passed).
 */
function compact(r: DmarcResultRecord, policyDomain: string): string {
  const dkim = r.dkim
    .slice(0, MAX_STORED_SIGNATURES)
    .map((d) => ({ domain: cut(String(d.domain), 253), selector: cut(String(d.selector), 63), result: cut(String(d.result), 16) }));
  const spf = r.spf && { ...r.spf, domain: cut(String(r.spf.domain), 253), result: cut(String(r.spf.result), 16) };
  const base = { ...r, headerFrom: cut(r.headerFrom, 253), sourceIp: r.sourceIp && cut(r.sourceIp, 64), policyDomain, spf, receivedAt: r.receivedAt.toISOString() };
  for (let n = dkim.length; ; n--) {
    const json = JSON.stringify({ ...base, dkim: dkim.slice(0, n) });
    if (json.length <= MAX_RECORD_CHARS || n === 0) return json;
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
