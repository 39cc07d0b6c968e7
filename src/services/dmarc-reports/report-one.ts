/**
 * One aggregate report (RFC 7489 7.2) of one policy domain's period, for a report pass (run.ts,
 * which holds the lock and backs off): finishes an earlier send whose records were left
 * behind, looks the DMARC record up again, keeps the rua addresses it may use (RFC 7489 7.1,
 * lib/dmarc-report/destinations.ts), builds the report (cut to the rows that fit when no
 * address's `!size` limit can take it whole), counts it per destination domain and day, signs
 * and sends it, then removes the records it covered.
 *
 * Fails: rejects on a store error (the pass makes it the period's outcome); DNS and send
 * failures are outcomes (dns-temperror, send-failed).
 */
import { createHash, randomBytes } from 'node:crypto';
import { buildAggregateReportAsync, DEFAULT_MAX_ROWS, type AggregateReport } from '../../lib/dmarc-report/aggregate';
import { resolveDestinations } from '../../lib/dmarc-report/destinations';
import { composeReportMail } from '../../lib/dmarc-report/mail';
import type { ReportPeriod } from '../../lib/dmarc-report/period';
import { fetchPolicy } from '../../lib/dmarc-report/policy';
import type { Store } from '../../store/store';
import type { ReportOutcome, ReportSettings, ReportStatus, RunDeps } from './run';

/** Report mails per destination domain and UTC day (services.dmarcReports.maxReportsPerDestinationPerDay). */
export const DEFAULT_MAX_PER_DESTINATION = 10000;

const SENT = 'dmarc-report-sent:';
const TO_COUNT = 'dmarc-report-to:';
/** How long a sent-but-not-removed marker lasts: as long as the records it guards. */
const SENT_TTL_MS = 32 * 24 * 3600 * 1000;

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

export async function reportOne(
  deps: RunDeps,
  cfg: ReportSettings,
  policyDomain: string,
  period: ReportPeriod,
  dryRun: boolean,
  signal?: AbortSignal,
  dnsFailed: ReadonlySet<string> = new Set(),
): Promise<ReportOutcome> {
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
  // A destination whose authorization timed out earlier in this pass is not asked again: many
  // hostile records can name one destination whose name server never answers.
  const known = found.policy.rua.filter((u) => dnsFailed.has(u.domain)).map((u) => u.domain);
  if (known.length) return { ...base, status: 'waiting', messages, to: [], reason: `authorization of ${known.join(', ')} failed in this pass` };
  const dest = await resolveDestinations(deps.resolver, policyDomain, found.policy.rua, signal);
  // One report per domain-period: with any address undecided, all wait, so none gets it twice.
  if (dest.retry.length) {
    const domains = dest.retry.map((u) => u.domain);
    return { ...base, status: 'dns-temperror', messages, to: [], reason: `authorization of ${domains.join(', ')}`, dnsFailed: domains };
  }
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
  // RFC 7489 7.1: the size of the mail as sent, so with its DKIM-Signature fields (one per
  // active key: a 4096-bit RSA and an Ed25519 signature take about 1300 octets, more with
  // long d= and s=). Before, a guess of 1024 octets let such a report exceed the limit.
  const sizeOf = async (r: AggregateReport & { reportId: string }) => {
    const raw = compose(r, all);
    return deps.sign ? (await deps.sign(raw)).length : raw.length;
  };
  let report = await build(cfg.maxRowsPerReport ?? DEFAULT_MAX_ROWS);
  let size: number;
  try {
    size = await sizeOf(report);
  } catch (err) {
    return { ...base, status: 'send-failed', messages, to: [], reason: `DKIM signing failed: ${(err as Error).message}`, report };
  }
  // RFC 7489 7.1: a `!size` limit is on the report as sent; addresses that cannot take it are skipped.
  let fits = dest.send.filter((u) => u.maxBytes === undefined || size <= u.maxBytes);
  // When no address can take it, a report of the rows with the largest counts that fits (the
  // rest named in report_metadata/error) rather than none: else forged mail in many distinct
  // rows would make the domain's reports too big to send and silence them.
  const limit = Math.max(...dest.send.map((u) => u.maxBytes ?? 0));
  for (let n = report.rows; !fits.length && n > 1; ) {
    n = Math.max(1, Math.min(Math.floor(n * 0.9), Math.floor((n * limit) / size)));
    report = await build(n);
    size = await sizeOf(report);
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
