/**
 * One pass of the aggregate report sender (RFC 7489 7.2): for every policy domain and finished
 * report period with stored results (store/dmarc-results.ts; a UTC day, or shorter when the
 * domain's ri= asked for it when the results were stored: lib/dmarc-report/period.ts), look up
 * the domain's DMARC record again, keep the rua addresses it may use (RFC 7489 7.1,
 * lib/dmarc-report/destinations.ts), build the report (lib/dmarc-report/aggregate.ts) with the
 * period's begin and end, mail it and only then remove the records. The period is the one in
 * the store key: the record looked up now gives the addresses and policy_published, not the
 * period, so a changed ri= never splits or merges periods already stored.
 *
 * One report per domain and period however many processes and hosts share the store: a
 * domain-period is worked on under a lock key (setIfAbsent with a TTL, so a crashed sender's
 * lock lapses), and its records are removed once the downstream accepted the report, so a
 * later pass finds nothing left to send. Between the accepted send and the removal a
 * "dmarc-report-sent:" key holds the Report-ID and how many records it covered: if the
 * removal fails, the next pass removes those records instead of sending them again (a
 * duplicate remains possible only if the store fails between the send and that key's write).
 * A failure (DNS temperror, downstream refused or down) leaves the records and sets a back-off
 * key: the next try waits retryBaseMs, doubling up to retryMaxMs. A period's records are left
 * alone until the period is over and `graceSec` more have passed (a message received at
 * 23:59:59 whose checks end after midnight, or a host whose clock is a little behind, still
 * lands in its period's report). After `maxAttempts` failed tries the period's records are
 * dropped (status given-up, logged by the service) rather than kept for a month.
 *
 * Pending periods come from the store's pending index (store/dmarc-results.ts periods(),
 * oldest day first); the entries of periods done in a pass are pruned at its end. Periods
 * tried for the first time go before those that failed before (retries), and a report's
 * destinations are looked up at once: a hostile record whose lookups never answer costs one
 * DNS timeout per try and cannot keep the other domains' reports waiting behind its retries.
 * After a DNS failure, the pass asks neither that organizational domain's policy nor that
 * destination's authorization again; a period made to wait so is not made to wait at its next
 * pass (dmarc-report-skipped:), so nobody holds another's reports back pass after pass. One
 * report is built and sent by report-one.ts.
 *
 * Report-ID: the policy domain, the period and a digest of the report's content
 * (lib/dmarc-report/aggregate.ts reportDigest) and of the store's identity (report-one.ts), so
 * a second report for a period (records that came after the first) has another Report-ID, the
 * same report resent keeps its own, and hosts with stores of their own never share one.
 *
 * Fails: never throws for one domain's trouble (it is in the outcome); a store that is down
 * rejects with STORE_UNAVAILABLE and the service logs it and tries at the next tick.
 */
import type { DnsResolver } from '../../lib/dns';
import type { AggregateReport } from '../../lib/dmarc-report/aggregate';
import { dayOf, parsePeriod, type ReportPeriod } from '../../lib/dmarc-report/period';
import { orgDomain } from '../../lib/dmarc-report/policy';
import { reportOne } from './report-one';
import type { Store } from '../../store/store';
import type { StoredDmarcResults } from '../../store/dmarc-results';
import type { SendMail } from '../../notify/send';

export interface ReportSettings {
  readonly orgName: string;
  /** Contact address in report_metadata. */
  readonly email: string;
  /** From: and envelope sender of report mail. */
  readonly from: string;
  /** Our domain: the report's Submitter and the receiver part of the file name. */
  readonly submitter: string;
  readonly lockTtlMs: number;
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
  /** Domain-periods worked on per pass at most. */
  readonly maxReportsPerRun: number;
  /** Seconds after a period's end before it is reported (default DEFAULT_GRACE_SEC). */
  readonly graceSec?: number;
  /** Failed tries (DNS, send) after which a period's records are dropped (default DEFAULT_MAX_ATTEMPTS). */
  readonly maxAttempts?: number;
  /** Rows per report at most (default DEFAULT_MAX_ROWS). */
  readonly maxRowsPerReport?: number;
  /** Report mails per destination domain and UTC day (default DEFAULT_MAX_PER_DESTINATION). */
  readonly maxReportsPerDestinationPerDay?: number;
}

export { DEFAULT_MAX_PER_DESTINATION } from './report-one';

export const DEFAULT_GRACE_SEC = 600;
export const DEFAULT_MAX_ATTEMPTS = 12;

export interface RunDeps {
  readonly store: Store;
  readonly results: StoredDmarcResults;
  readonly resolver: DnsResolver;
  readonly send: SendMail;
  readonly now: () => Date;
  /** Who holds a lock, for the lock value (host and pid). */
  readonly owner: string;
  /** DKIM-signs the report mail (sign.ts); without it the mail goes unsigned. */
  readonly sign?: (raw: Buffer) => Promise<Buffer>;
}

export type ReportStatus =
  | 'sent'
  | 'already-sent'
  | 'dry-run'
  | 'no-policy'
  | 'no-destination'
  | 'too-big'
  | 'destination-limit'
  | 'dns-temperror'
  | 'send-failed'
  | 'given-up'
  | 'locked'
  | 'waiting'
  | 'empty';

export interface ReportOutcome {
  readonly policyDomain: string;
  /** The report period's name (lib/dmarc-report/period.ts): `2026-12-06` or `2026-12-06T03Z/1h`. */
  readonly period: string;
  readonly status: ReportStatus;
  /** Messages the report covers (or would cover). */
  readonly messages: number;
  readonly to: readonly string[];
  readonly reason?: string;
  readonly report?: AggregateReport;
  /** The destination domains whose authorization lookup failed (dns-temperror). */
  readonly dnsFailed?: readonly string[];
}

export interface RunOptions {
  /** Only periods of this UTC day (YYYY-MM-DD) and later. */
  readonly since?: string;
  /** Build and return the reports without sending, locking or removing anything. */
  readonly dryRun?: boolean;
  /**
   * Aborted when the service closes: no further domain-period is started and DNS lookups in
   * flight end at once (a send in flight is finished), so a stop never waits for a whole pass.
   */
  readonly signal?: AbortSignal;
}

const LOCK = 'dmarc-report-lock:';
const WAIT = 'dmarc-report-wait:';
const ATTEMPTS = 'dmarc-report-attempts:';
/** A period that waited in a pass for another domain's DNS failure: not made to wait again. */
const SKIPPED = 'dmarc-report-skipped:';
const ATTEMPTS_TTL_MS = 32 * 24 * 3600 * 1000;

export async function runReports(deps: RunDeps, cfg: ReportSettings, opts: RunOptions = {}): Promise<ReportOutcome[]> {
  const nowSec = Math.floor(deps.now().getTime() / 1000);
  const graceSec = cfg.graceSec ?? DEFAULT_GRACE_SEC;
  const pending: Pending[] = [];
  for (const { policyDomain, period: name } of await deps.results.periods()) {
    // A key whose period is not one of ours was not written by us: left to expire.
    const period = parsePeriod(name);
    if (period && period.end + graceSec < nowSec && (!opts.since || dayOf(period) >= opts.since)) pending.push({ policyDomain, period });
  }
  pending.sort((a, b) => a.period.begin - b.period.begin || a.period.lengthSec - b.period.lengthSec || a.policyDomain.localeCompare(b.policyDomain));
  const pass: Pass = { out: [], attempted: 0, done: [], dnsFailed: new Set() };
  const stop = () => pass.attempted >= cfg.maxReportsPerRun || opts.signal?.aborted === true;
  // Periods that failed before are tried after every period tried for the first time: a
  // domain whose DNS never answers (a hostile record's owner can arrange that for every try)
  // must not hold up the reports of everyone else, pass after pass.
  const retries: Pending[] = [];
  for (const p of pending) {
    if (stop()) break;
    if (opts.dryRun) {
      pass.attempted++;
      pass.out.push(await reportOne(deps, cfg, p.policyDomain, p.period, true, opts.signal));
      continue;
    }
    const id = `${p.policyDomain}:${p.period.id}`;
    if (await deps.store.get(WAIT + id)) {
      pass.out.push({ policyDomain: p.policyDomain, period: p.period.id, messages: 0, to: [], status: 'waiting' });
      continue;
    }
    if (await deps.store.get(ATTEMPTS + id)) retries.push(p);
    else await attempt(deps, cfg, p, pass, opts.signal);
  }
  for (const p of retries) {
    if (stop()) break;
    await attempt(deps, cfg, p, pass, opts.signal);
  }
  if (pass.done.length) await deps.results.prune(pass.done);
  return pass.out;
}

interface Pending {
  readonly policyDomain: string;
  readonly period: ReportPeriod;
}

/** What a pass did so far: its outcomes, the domain-periods it worked on and those it finished. */
interface Pass {
  readonly out: ReportOutcome[];
  attempted: number;
  readonly done: { policyDomain: string; period: string }[];
  /**
   * Organizational domains of policy domains, and rua destination domains, whose DNS failed in
   * this pass: the other periods that would ask them again wait for the next pass.
   */
  readonly dnsFailed: Set<string>;
}

/** One domain-period under its lock: reported, or backed off (given up after maxAttempts). */
async function attempt(deps: RunDeps, cfg: ReportSettings, { policyDomain, period }: Pending, pass: Pass, signal?: AbortSignal): Promise<void> {
  const id = `${policyDomain}:${period.id}`;
  const base = { policyDomain, period: period.id, messages: 0, to: [] };
  // One DNS failure per organizational domain and pass: its other periods (a wildcard record
  // gives an attacker any number of policy domains under one name server) would most likely
  // time out too, each costing the pass as much; they are not tried and count no failure.
  // But a period waits so at most once: else an attacker sharing its organizational domain
  // (a customer's delegated subdomain of a hosting domain not in the public suffix list) or
  // its destination, with a fresh failing period sorted before it at every pass, held its
  // reports back until the records expired. Its next try may cost one more timeout, no more.
  const skipped = SKIPPED + id;
  const waitedBefore = (await deps.store.get(skipped)) !== undefined;
  const wait = async (o: ReportOutcome) => {
    await deps.store.set(skipped, '1', { ttlMs: ATTEMPTS_TTL_MS });
    pass.out.push(o);
  };
  const org = orgDomain(policyDomain);
  if (pass.dnsFailed.has(org) && !waitedBefore) return wait({ ...base, status: 'waiting', reason: `DNS of ${org} failed in this pass` });
  if (!(await deps.store.setIfAbsent(LOCK + id, deps.owner, { ttlMs: cfg.lockTtlMs }))) {
    pass.out.push({ ...base, status: 'locked' });
    return;
  }
  pass.attempted++;
  try {
    // A store or DNS error of one domain-period is its outcome, not the end of the pass.
    let o = await reportOne(deps, cfg, policyDomain, period, false, signal, waitedBefore ? new Set() : pass.dnsFailed).catch(
      (err: Error): ReportOutcome => ({ ...base, status: 'send-failed', reason: `error: ${err.message}` }),
    );
    if (o.status === 'waiting') return await wait(o);
    if (waitedBefore) await deps.store.delete(skipped);
    const failed = o.status === 'dns-temperror' || o.status === 'send-failed';
    if (o.status === 'dns-temperror') for (const d of o.dnsFailed ?? [org]) pass.dnsFailed.add(d);
    // A lookup cut short because we are stopping is not the domain's failure: tried again at the next start.
    if (failed && signal?.aborted) {
      pass.out.push({ ...o, reason: `stopped: ${o.reason ?? o.status}` });
      return;
    }
    if (failed) {
      const attempts = await backOff(deps.store, cfg, id);
      if (attempts >= (cfg.maxAttempts ?? DEFAULT_MAX_ATTEMPTS)) {
        // Dropped rather than kept (and tried) for a month: the log line says so.
        const read = await deps.results.peek(policyDomain, period.id);
        await deps.results.remove(policyDomain, period.id, read);
        await deps.store.delete(ATTEMPTS + id);
        await deps.store.delete(WAIT + id);
        o = { ...o, status: 'given-up', messages: read.messages + read.over, reason: `${attempts} failed tries, last: ${o.reason ?? o.status}; records dropped` };
      }
    } else await deps.store.delete(ATTEMPTS + id);
    if (o.status !== 'dns-temperror' && o.status !== 'send-failed') pass.done.push({ policyDomain, period: period.id });
    pass.out.push(o);
  } finally {
    // Only our own lock: after a pass longer than lockTtlMs it may be another worker's.
    await deps.store.deleteIfValue(LOCK + id, deps.owner);
  }
}

async function backOff(store: Store, cfg: ReportSettings, id: string): Promise<number> {
  const attempts = await store.increment(ATTEMPTS + id, 1, { ttlMs: ATTEMPTS_TTL_MS });
  const waitMs = Math.min(cfg.retryMaxMs, cfg.retryBaseMs * 2 ** Math.min(30, attempts - 1));
  await store.set(WAIT + id, String(attempts), { ttlMs: waitMs });
  return attempts;
}
