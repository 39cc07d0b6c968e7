/**
 * Where each DMARC evaluation is recorded, so that aggregate reports (RFC 7489 7.2) can be
 * built from the history: the dmarc stage records, a report sender (services/dmarc-reports)
 * takes one policy domain's report period at a time.
 *
 * Results are stored aggregated, as the report shows them: a row is what a report row holds
 * of a message (source IP, header From, disposition and its reason, alignment verdicts, DKIM
 * and SPF results; not the time), kept once per policy domain and report period in the list
 * "dmarc-rows:<policy domain>:<period>" (JSON {k, r}, k a digest of r), with a counter
 * "dmarc-n:<policy domain>:<period>:<k>" of its messages. So the store grows with distinct
 * rows, not messages, counts stay exact across processes and hosts (atomic increments), and a
 * report reads few items. The period is the report period the result falls in
 * (lib/dmarc-report/period.ts: `2026-12-06` for a UTC day, `2026-12-06T03Z/1h` for an hour),
 * decided here, when the result is stored, from the `ri=` of the DMARC record the dmarc stage
 * applied (requestedIntervalSec) and `minIntervalSec`: a report covers one list, so a period
 * can be reported and removed without touching the rest of its day. A later change of ri=
 * applies to results stored after it (docs/dmarc-reports.md). Records of the older form (one
 * list item per message under "dmarc:") are not read: they expire.
 *
 * A report removes what it read by decrementing each row's counter by the count it reported
 * (remove()): messages counted meanwhile stay for the next report; rows at zero leave the list.
 *
 * Bounds (an attacker controls every field of a record but the source IP):
 * - a row is at most MAX_RECORD_CHARS: domains are cut to 253 characters, selectors to 63,
 *   at most MAX_STORED_SIGNATURES DKIM results (the dmarc stage stores verified ones only);
 * - each list expires RETENTION_MS after its last append, and a period keeps at most
 *   `maxPerPeriod` rows: the first ones. The messages of later rows are only counted
 *   ("dmarc-count:over:<domain>:<period>") and the report says how many it does not itemize,
 *   so a flood of forged mail arriving after a domain's real mail cannot push the real rows
 *   out (rows already kept go on counting);
 * - per UTC day, over all processes sharing the store, at most `maxDomainsPerDay`
 *   organizational domains (RFC 7489 3.2, the public suffix list through tldts; counters
 *   "dmarc-count:domains:<day>" and "dmarc-count:seen:<org domain>:<day>"), and per
 *   organizational domain at most `maxPeriodsPerOrgDomain` domain-periods a day
 *   ("dmarc-count:org:<org domain>:<day>"), so that one attacker's ten thousand subdomains use
 *   up their own organizational domain's share only; and `maxRecordsPerDay` messages. The
 *   first result refused each day by a cap is logged.
 * A result without a policy domain (no DMARC record found, or the lookup failed) has no one to
 * report to and is not kept.
 *
 * Pending index (what the sender reads, oldest first, store/dmarc-due.ts): a domain-period is
 * added when it gets its first row; periods() lists them oldest day first, prune() drops those
 * whose rows are gone.
 *
 * A message Postfix retries (a later stage tempfailed it) is recorded once: record() takes a
 * retry-stable id (RecordOptions.once).
 *
 * Fails: record() never rejects for the store: a result the store does not take (Redis down,
 * an sqlite file on a full disk) is lost, the mail goes on, and the loss is logged at most once
 * a minute with the count held back (one line per message would flood the log for as long as
 * the disk stays full). Other errors (a bug) reject; the dmarc stage logs them.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { isPostsealError } from '../errors';
import { SHORTEST_PERIOD_SEC, periodLengthSec, periodOf } from '../lib/dmarc-report/period';
import { LogLimit, REPEATED_FAILURE_LOG_MS } from '../lib/log-limit';
import { orgDomain } from '../lib/dmarc-report/policy';
import { addDue, listDue, pruneDue, type DomainPeriod } from './dmarc-due';
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
/** Distinct rows per policy domain and report period (services.dmarcReports.maxRowsPerReport). */
export const MAX_RECORDS_PER_PERIOD = 10000;
/** Domain-periods per organizational domain and UTC day (services.dmarcReports.maxPeriodsPerOrgDomain). */
export const MAX_PERIODS_PER_ORG_DOMAIN = 200;
/** DKIM results kept per record: the dmarc stage stores only the signatures it verified. */
export const MAX_STORED_SIGNATURES = 10;
/** The longest stored record, in JSON characters: a record past it loses DKIM results. */
export const MAX_RECORD_CHARS = 2048;
/** Row lists (the form before rows, one item per message under "dmarc:", is not read). */
const KEY_PREFIX = 'dmarc-rows:';
const COUNTER_PREFIX = 'dmarc-n:';
const COUNT_PREFIX = 'dmarc-count:';

export interface DmarcResultLimits {
  readonly retentionMs?: number;
  /** Distinct rows per policy domain and report period (the first are kept; later ones' messages only counted). */
  readonly maxPerPeriod?: number;
  /** The shortest report period, in seconds (services.dmarcReports.minIntervalSec; default an hour). */
  readonly minIntervalSec?: number;
  /** Organizational domains per day, all hosts together. */
  readonly maxDomainsPerDay?: number;
  /** Domain-periods per organizational domain and day, all hosts together. */
  readonly maxPeriodsPerOrgDomain?: number;
  /** Records per day over all domains, all hosts together. */
  readonly maxRecordsPerDay?: number;
  /** Where the first refused result of a day, and results the store did not take, are logged. */
  readonly log?: Pick<Logger, 'warn' | 'error'>;
}

/** The UTC day of a time, as YYYY-MM-DD. */
export function utcDay(t: Date): string {
  return t.toISOString().slice(0, 10);
}

function listKey(policyDomain: string, period: string): string {
  return `${KEY_PREFIX}${policyDomain}:${period}`;
}

function countKey(policyDomain: string, period: string, k: string): string {
  return `${COUNTER_PREFIX}${policyDomain}:${period}:${k}`;
}

/** One stored row: what the report shows of its messages, `count` of them, `k` its digest. */
export type StoredRow = Omit<DmarcResultRecord, 'receivedAt' | 'policyDomain' | 'requestedIntervalSec'> & { readonly k: string; readonly count: number };

/** What peek() read of a period. */
export interface PeriodRows {
  readonly records: readonly StoredRow[];
  /** Messages in the rows. */
  readonly messages: number;
  /** Messages counted but in no row (past maxPerPeriod rows). */
  readonly over: number;
}

/** DMARC results in the shared store: one capped list per policy domain and report period. */
export class StoredDmarcResults implements DmarcResultStore {
  /** Results lost to a failing store (a full disk) are logged a line a minute. */
  private readonly lostLog = new LogLimit(REPEATED_FAILURE_LOG_MS);
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
    try {
      await this.recordOnce(r, opts);
    } catch (err) {
      if (!isPostsealError(err, 'STORE_UNAVAILABLE')) throw err;
      const heldBack = this.lostLog.take();
      if (heldBack !== undefined)
        this.limits.log?.error(
          { err, code: err.code, policyDomain: r.policyDomain, heldBack },
          'DMARC result not stored; results the store does not take are logged at most once a minute',
        );
    }
  }

  private async recordOnce(r: DmarcResultRecord, opts: RecordOptions): Promise<void> {
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
    const row = compact(r);
    const k = createHash('sha256').update(row).digest('hex').slice(0, 24);
    const counter = countKey(domain, period.id, k);
    // A row seen before in this period (and not yet reported) only counts.
    if ((await this.store.increment(counter, 1, ttl)) !== 1) return;
    // A new row (or one that came back after its report): the first maxPerPeriod rows are kept,
    // the messages of later ones counted (remove() gives the room back).
    const rows = await this.store.increment(`${COUNT_PREFIX}period:${domain}:${period.id}`, 1, ttl);
    if (rows > maxPerPeriod) {
      await this.store.increment(counter, -1, ttl);
      await this.store.increment(`${COUNT_PREFIX}period:${domain}:${period.id}`, -1, ttl);
      await this.store.increment(`${COUNT_PREFIX}over:${domain}:${period.id}`, 1, ttl);
      return;
    }
    const key = listKey(domain, period.id);
    const length = await this.store.append(key, JSON.stringify({ k, r: JSON.parse(row) }), ttl);
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
    await addDue(this.store, { policyDomain: domain, period: period.id }, retentionMs);
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
   * The policy domains and report periods (period.ts names) that have rows, oldest day first,
   * at most `limit` pairs (store/dmarc-due.ts). An entry whose rows are gone may still be listed
   * until prune() drops it: peek() then finds nothing.
   */
  async periods(limit = SCAN_MAX_LIMIT): Promise<DomainPeriod[]> {
    return listDue(this.store, limit);
  }

  /** Drops from the pending index the given domain-periods whose rows are gone, and duplicates. */
  async prune(done: readonly DomainPeriod[]): Promise<void> {
    await pruneDue(this.store, done, async (d) => (await this.store.range(listKey(d.policyDomain, d.period), 1)).length === 0, this.limits.retentionMs);
  }

  /**
   * Reads one policy domain's rows of one period, with their counts, without removing them, for
   * a report sender that removes them (remove) only once its report was accepted. `messages` is
   * the sum of the counts; `over` how many messages of the period were counted but are in no
   * row (past maxPerPeriod rows).
   */
  async peek(policyDomain: string, period: string): Promise<PeriodRows> {
    const domain = policyDomain.toLowerCase();
    const seen = new Set<string>();
    const records: StoredRow[] = [];
    for (const item of await this.store.range(listKey(domain, period))) {
      const parsed = parseItem(item);
      if (!parsed || seen.has(parsed.k)) continue;
      seen.add(parsed.k);
      const count = Number(await this.store.get(countKey(domain, period, parsed.k))) || 0;
      if (count > 0) records.push({ ...parsed.r, k: parsed.k, count });
    }
    const over = Math.max(0, Number(await this.store.get(`${COUNT_PREFIX}over:${domain}:${period}`)) || 0);
    return { records, over, messages: records.reduce((n, r) => n + r.count, 0) };
  }

  /**
   * Takes away what a peek() read: each row's count is decreased by what was read (messages
   * counted since stay for the next report), and rows left at zero leave the list. The list is
   * taken atomically and every row still counting appended again, so no row is lost.
   */
  async remove(policyDomain: string, period: string, read: { readonly records: readonly { readonly k: string; readonly count: number }[]; readonly over: number }): Promise<void> {
    const domain = policyDomain.toLowerCase();
    const ttl = { ttlMs: this.limits.retentionMs };
    for (const r of read.records) await this.store.increment(countKey(domain, period, r.k), -r.count, ttl);
    if (read.over) await this.store.increment(`${COUNT_PREFIX}over:${domain}:${period}`, -read.over, ttl);
    const key = listKey(domain, period);
    const seen = new Set<string>();
    let gone = 0;
    for (const item of await this.store.takeAll(key)) {
      const parsed = parseItem(item);
      if (!parsed || seen.has(parsed.k)) continue;
      seen.add(parsed.k);
      if ((Number(await this.store.get(countKey(domain, period, parsed.k))) || 0) > 0) await this.store.append(key, item, ttl);
      else gone++;
    }
    if (gone) await this.store.increment(`${COUNT_PREFIX}period:${domain}:${period}`, -gone, ttl);
  }

  /** Removes and returns one policy domain's rows of one period (tests, tools). */
  async take(policyDomain: string, period: string): Promise<readonly StoredRow[]> {
    const read = await this.peek(policyDomain, period);
    await this.remove(policyDomain, period, read);
    await this.prune([{ policyDomain: policyDomain.toLowerCase(), period }]);
    return read.records;
  }
}

/**
 * One row as stored: a record without its time and period (those are the key), domains at most
 * 253 characters, selectors 63, at most MAX_STORED_SIGNATURES DKIM results, and DKIM results
 * dropped from the end until the JSON is at most MAX_RECORD_CHARS.
 */
function compact(r: DmarcResultRecord): string {
  const dkim = r.dkim
    .slice(0, MAX_STORED_SIGNATURES)
    .map((d) => ({ domain: cut(String(d.domain), 253), selector: cut(String(d.selector), 63), result: cut(String(d.result), 16) }));
  const spf = r.spf && { domain: cut(String(r.spf.domain), 253), result: cut(String(r.spf.result), 16), ...(r.spf.scope ? { scope: r.spf.scope } : {}) };
  const base = {
    sourceIp: r.sourceIp && cut(r.sourceIp, 64),
    headerFrom: cut(r.headerFrom.toLowerCase(), 253),
    policy: r.policy,
    result: r.result,
    disposition: r.disposition,
    spf,
    dkimAligned: r.dkimAligned,
    spfAligned: r.spfAligned,
    override: r.override,
  };
  for (let n = dkim.length; ; n--) {
    const json = JSON.stringify({ ...base, dkim: dkim.slice(0, n) });
    if (json.length <= MAX_RECORD_CHARS || n === 0) return json;
  }
}

const cut = (s: string, max: number) => (s.length > max ? s.slice(0, max) : s);

function parseItem(item: string): { k: string; r: Omit<StoredRow, 'k' | 'count'> } | undefined {
  try {
    const v = JSON.parse(item) as { k?: unknown; r?: unknown };
    if (typeof v.k !== 'string' || typeof v.r !== 'object' || v.r === null) return undefined;
    const r = v.r as Omit<StoredRow, 'k' | 'count'>;
    if (typeof r.headerFrom !== 'string' || !Array.isArray(r.dkim)) return undefined;
    return { k: v.k, r };
  } catch {
    // Not one of ours.
    return undefined;
  }
}

/**
 * For commands that evaluate a message without keeping history (`postseal verify`,
 * `config print`): their results must not reach the aggregate reports.
 */
export const dmarcResultsNotKept: DmarcResultStore = {
  async record() {},
};
