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
 *
 * Report-ID: the policy domain, the period and a digest of the report's content
 * (lib/dmarc-report/aggregate.ts reportDigest) and of the store's identity (storeIdentity), so
 * a second report for a period (records that came after the first) has another Report-ID, the
 * same report resent keeps its own, and hosts with stores of their own never share one.
 *
 * Fails: never throws for one domain's trouble (it is in the outcome); a store that is down
 * rejects with STORE_UNAVAILABLE and the service logs it and tries at the next tick.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { DnsResolver } from '../../lib/dns';
import { buildAggregateReportAsync, DEFAULT_MAX_ROWS, type AggregateReport } from '../../lib/dmarc-report/aggregate';
import { resolveDestinations } from '../../lib/dmarc-report/destinations';
import { composeReportMail } from '../../lib/dmarc-report/mail';
import { dayOf, parsePeriod, type ReportPeriod } from '../../lib/dmarc-report/period';
import { fetchPolicy } from '../../lib/dmarc-report/policy';
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

export const DEFAULT_MAX_PER_DESTINATION = 10000;

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
const SENT = 'dmarc-report-sent:';
const TO_COUNT = 'dmarc-report-to:';
/** How long a sent-but-not-removed marker lasts: as long as the records it guards. */
const SENT_TTL_MS = 32 * 24 * 3600 * 1000;

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
  const pass: Pass = { out: [], attempted: 0, done: [] };
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
}

/** One domain-period under its lock: reported, or backed off (given up after maxAttempts). */
async function attempt(deps: RunDeps, cfg: ReportSettings, { policyDomain, period }: Pending, pass: Pass, signal?: AbortSignal): Promise<void> {
  const id = `${policyDomain}:${period.id}`;
  const base = { policyDomain, period: period.id, messages: 0, to: [] };
  if (!(await deps.store.setIfAbsent(LOCK + id, deps.owner, { ttlMs: cfg.lockTtlMs }))) {
    pass.out.push({ ...base, status: 'locked' });
    return;
  }
  pass.attempted++;
  try {
    // A store or DNS error of one domain-period is its outcome, not the end of the pass.
    let o = await reportOne(deps, cfg, policyDomain, period, false, signal).catch(
      (err: Error): ReportOutcome => ({ ...base, status: 'send-failed', reason: `error: ${err.message}` }),
    );
    const failed = o.status === 'dns-temperror' || o.status === 'send-failed';
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

const STORE_ID = 'dmarc-report-store-id';

/**
 * A random name for the store reports are built from, made by the first sender that needs it
 * and read by every later one: the same for all processes and hosts sharing the store (so a
 * report resent by another of them keeps its Report-ID), another for a host with its own.
 */
async function storeIdentity(store: Store): Promise<string> {
  const mine = randomBytes(12).toString('hex');
  if (await store.setIfAbsent(STORE_ID, mine)) return mine;
  return (await store.get(STORE_ID)) ?? mine;
}

async function backOff(store: Store, cfg: ReportSettings, id: string): Promise<number> {
  const attempts = await store.increment(ATTEMPTS + id, 1, { ttlMs: 32 * 24 * 3600 * 1000 });
  const waitMs = Math.min(cfg.retryMaxMs, cfg.retryBaseMs * 2 ** Math.min(30, attempts - 1));
  await store.set(WAIT + id, String(attempts), { ttlMs: waitMs });
  return attempts;
}

async function reportOne(deps: RunDeps, cfg: ReportSettings, policyDomain: string, period: ReportPeriod, dryRun: boolean, signal?: AbortSignal): Promise<ReportOutcome> {
  const base = { policyDomain, period: period.id };
  const earlier = dryRun ? undefined : await finishEarlierSend(deps, policyDomain, period.id);
  const read = await deps.results.peek(policyDomain, period.id);
  const { records, over } = read;
  const messages = read.messages + over;
  if (earlier && !messages) return { ...base, status: 'already-sent', messages: earlier.messages, to: [], reason: `Report-ID ${earlier.reportId}` };
  const drop = async (status: ReportStatus, to: readonly string[] = [], reason?: string): Promise<ReportOutcome> => {
    // Nobody may or will receive these: they are removed rather than kept for a month.
    if (!dryRun) await deps.results.remove(policyDomain, period.id, read);
    return { ...base, status, messages, to, reason };
  };
  if (!records.length && over) return drop('empty');
  if (!records.length) return { ...base, status: 'empty', messages: 0, to: [] };
  const found = await fetchPolicy(deps.resolver, policyDomain, signal);
  if (found.kind === 'temperror') return { ...base, status: 'dns-temperror', messages, to: [], reason: found.reason };
  if (found.kind === 'none') return drop('no-policy');
  const dest = await resolveDestinations(deps.resolver, policyDomain, found.policy.rua, signal);
  // One report per domain-period: with any address undecided, all wait, so none gets it twice.
  if (dest.retry.length) return { ...base, status: 'dns-temperror', messages, to: [], reason: `authorization of ${dest.retry.map((u) => u.domain).join(', ')}` };
  if (!dest.send.length) return drop('no-destination', [], dest.refused.length ? `not authorized: ${dest.refused.map((u) => u.address).join(', ')}` : undefined);
  if (!records.length) return drop('empty');

  const { begin, end } = period;
  const store = await storeIdentity(deps.store);
  const build = (maxRows: number) =>
    buildAggregateReportAsync(
      cfg.submitter,
      { meta: { orgName: cfg.orgName, email: cfg.email }, policy: found.policy, begin, end, records, notItemized: over, maxRows },
      // No '/' in the id: receivers' tools may name files after it. The store's identity is in
      // the digest: two hosts with stores of their own whose rows happen to be equal (one
      // message each from the same source) send two reports, and the same Report-ID would make
      // the receiver drop one as a duplicate.
      (digest) => `${policyDomain}.${period.id.replace('/', '.')}.${createHash('sha256').update(`${store}\n${digest}`).digest('hex').slice(0, 16)}`,
    );
  const all = dest.send.map((u) => u.address);
  const date = deps.now();
  const compose = (r: AggregateReport & { reportId: string }, to: readonly string[]) =>
    composeReportMail({ from: cfg.from, to, policyDomain, submitter: cfg.submitter, reportId: r.reportId, begin, end, fileName: r.fileName, gzip: r.gzip, date });
  // The DKIM-Signature added after this count: room for one of a 4096-bit key.
  const signature = deps.sign ? 1024 : 0;
  let report = await build(cfg.maxRowsPerReport ?? DEFAULT_MAX_ROWS);
  let size = compose(report, all).length + signature;
  // RFC 7489 7.1: a `!size` limit is on the report as sent; addresses that cannot take it are skipped.
  let fits = dest.send.filter((u) => u.maxBytes === undefined || size <= u.maxBytes);
  // When no address can take it, a report of the rows with the largest counts that fits (the
  // rest named in report_metadata/error) rather than none: else forged mail in many distinct
  // rows would make the domain's reports too big to send and silence them.
  const limit = Math.max(...dest.send.map((u) => u.maxBytes ?? 0));
  for (let n = report.rows; !fits.length && n > 1; ) {
    n = Math.max(1, Math.min(Math.floor(n * 0.9), Math.floor((n * limit) / size)));
    report = await build(n);
    size = compose(report, all).length + signature;
    fits = dest.send.filter((u) => u.maxBytes === undefined || size <= u.maxBytes);
  }
  if (!fits.length) return drop('too-big', all, `${size} bytes`);
  const { reportId } = report;
  // Per destination domain and day, counted only when a report is really going out.
  const to: string[] = [];
  const full: string[] = [];
  const day = deps.now().toISOString().slice(0, 10);
  const cap = cfg.maxReportsPerDestinationPerDay ?? DEFAULT_MAX_PER_DESTINATION;
  for (const u of fits) {
    if (dryRun || (await deps.store.increment(`${TO_COUNT}${u.domain}:${day}`, 1, { ttlMs: 2 * 86400 * 1000 })) <= cap) to.push(u.address);
    else full.push(u.domain);
  }
  if (!to.length) return drop('destination-limit', all, `${cap} reports today for ${full.join(', ')}`);
  let raw = compose(report, to);
  if (deps.sign) {
    try {
      raw = await deps.sign(raw);
    } catch (err) {
      return { ...base, status: 'send-failed', messages, to, reason: `DKIM signing failed: ${(err as Error).message}`, report };
    }
  }
  if (dryRun) return { ...base, status: 'dry-run', messages, to, report };
  const sent = await deps.send(cfg.from, to, raw);
  if (!sent.ok) return { ...base, status: 'send-failed', messages, to, reason: sent.reason, report };
  // Marked before the records go: if removing them fails, the next pass removes them instead
  // of sending the same report again (finishEarlierSend).
  const marker = `${SENT}${policyDomain}:${period.id}`;
  await deps.store.set(marker, JSON.stringify({ reportId, rows: records.map((r) => [r.k, r.count]), over }), { ttlMs: SENT_TTL_MS });
  try {
    await deps.results.remove(policyDomain, period.id, read);
    await deps.store.delete(marker);
  } catch (err) {
    return { ...base, status: 'sent', messages, to: sent.accepted, report, reason: `records not removed (${(err as Error).message}); the next pass removes them` };
  }
  return { ...base, status: 'sent', messages, to: sent.accepted, report };
}

/**
 * A report that was accepted but whose records were not all removed (the store failed after
 * the send): takes away the counts it covered, so they are not reported twice, and clears the
 * marker. Messages counted later stay for a report of their own.
 */
async function finishEarlierSend(deps: RunDeps, policyDomain: string, period: string): Promise<{ reportId: string; messages: number } | undefined> {
  const marker = `${SENT}${policyDomain}:${period}`;
  const raw = await deps.store.get(marker);
  if (raw === undefined) return undefined;
  let earlier: { reportId: string; rows: { k: string; count: number }[]; over: number } | undefined;
  try {
    const v = JSON.parse(raw) as { reportId?: unknown; rows?: unknown; over?: unknown };
    const over = Number.isSafeInteger(v.over) && (v.over as number) > 0 ? (v.over as number) : 0;
    const rows = Array.isArray(v.rows)
      ? v.rows.filter((r): r is [string, number] => Array.isArray(r) && typeof r[0] === 'string' && Number.isSafeInteger(r[1]) && r[1] > 0).map(([k, count]) => ({ k, count }))
      : [];
    if (typeof v.reportId === 'string') earlier = { reportId: v.reportId, rows, over };
  } catch {
    // Not ours: cleared below.
  }
  // A store failure here rejects: the marker stays for the next pass.
  if (earlier) await deps.results.remove(policyDomain, period, { records: earlier.rows, over: earlier.over });
  await deps.store.delete(marker);
  return earlier && { reportId: earlier.reportId, messages: earlier.rows.reduce((n, r) => n + r.count, 0) + earlier.over };
}
