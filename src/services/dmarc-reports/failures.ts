/**
 * The DMARC failure report sender (RFC 7489 7.3, RFC 6591): the dmarc stage offers a sample
 * when a domain's fo= and ruf= ask for a report (stages/dmarc/evaluate.ts); offer() only puts it
 * in a bounded in-memory queue and returns, and a drain loop, started on the next turn of the
 * event loop, sends the reports one at a time. The message being filtered never waits for a
 * report and a report's failure never reaches it.
 *
 * Per sample, in order: once per message (the dmarc stage's retry id, "dmarc-ruf-seen:<id>": a
 * message Postfix retries after a later stage tempfailed it is not reported again, unless the
 * report of an earlier attempt did not go out: dns-temperror, send-failed); the limits, counted in the shared store so that every worker and host
 * sharing it shares them, before any DNS lookup (a sample over a limit costs no query): per
 * organizational domain of the policy domain (RFC 7489 3.2, so an attacker's thousands of
 * subdomains share one limit) and UTC clock hour ("dmarc-ruf:<org domain>:<hour>"), over all
 * domains ("dmarc-ruf-all:<hour>"); then the ruf addresses that may receive it (RFC 7489 7.1,
 * the same `_report._dmarc` check as aggregate reports, lib/dmarc-report/destinations.ts; its
 * answers cached in the process for AUTH_CACHE_MS, at most AUTH_CACHE_MAX of them), each
 * destination domain at most maxPerDomainPerHour reports an hour whatever the policy domains
 * ("dmarc-ruf-to:<domain>:<hour>", so forged records cannot aim a flood at one mailbox); then
 * the mail (lib/dmarc-report/failure.ts), DKIM-signed (sign.ts) and handed to the notify
 * target (send.ts).
 *
 * Failure reports are timely or useless, so nothing is retried: a full queue, a limit reached,
 * a DNS failure of the authorization lookup, a refused send all drop the report with a log
 * line (a full queue logs once until the queue has room again).
 *
 * Reads main config `services.dmarcReports.failureReports` (through FailureSettings).
 * Fails: never throws out of offer() or the drain loop; a store that is down drops the report.
 */
import { authorizeDestination, isInternal, type DestinationVerdict } from '../../lib/dmarc-report/destinations';
import { orgDomain, type ReportUri } from '../../lib/dmarc-report/policy';
import { composeFailureReport, redact, reportHeaders, type DeliveryResult, type DmarcFailureSink, type FailureSample } from '../../lib/dmarc-report/failure';
import type { DnsResolver } from '../../lib/dns';
import { DEDUPE_MS } from '../../store/dmarc-results';
import type { Store } from '../../store/store';
import type { SendMail } from '../../notify/send';
import type { SignReport } from '../../notify/sign';

export interface FailureSettings {
  /** From: and envelope sender (services.dmarcReports.from). */
  readonly from: string;
  readonly submitter: string;
  readonly maxPerDomainPerHour: number;
  readonly maxPerHour: number;
  readonly maxQueued: number;
  readonly redactLocalParts: boolean;
  readonly maxHeaderBytes: number;
}

export interface FailureDeps {
  readonly store: Store;
  readonly resolver: DnsResolver;
  readonly send: SendMail;
  readonly sign?: SignReport;
  readonly log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
  readonly now: () => Date;
}

export type FailureStatus = 'sent' | 'already-reported' | 'no-destination' | 'dns-temperror' | 'domain-limit' | 'global-limit' | 'destination-limit' | 'send-failed';

export interface FailureOutcome {
  readonly policyDomain: string;
  readonly status: FailureStatus;
  readonly to: readonly string[];
  readonly reason?: string;
}

const HOUR_MS = 3600 * 1000;
const DOMAIN_COUNT = 'dmarc-ruf:';
const ALL_COUNT = 'dmarc-ruf-all:';
const TO_COUNT = 'dmarc-ruf-to:';
/** A message reported on (its retry id): Postfix's retries of it are not reported again. */
const SEEN = 'dmarc-ruf-seen:';
/** How long an authorization answer (authorized or not) is reused, and how many are kept. */
const AUTH_CACHE_MS = 3600 * 1000;
const AUTH_CACHE_MAX = 10000;
const USER_AGENT = 'postseal';

const deliveryResults: Record<FailureSample['disposition'], DeliveryResult> = { none: 'delivered', quarantine: 'spam', reject: 'reject' };

export class FailureReporter implements DmarcFailureSink {
  private readonly queue: FailureSample[] = [];
  private draining: Promise<void> | null = null;
  private full = false;
  private readonly authCache = new Map<string, { verdict: DestinationVerdict; until: number }>();
  /** Aborted by close(): lookups end at once, so a stop never waits on a DNS that does not answer. */
  private readonly stopping = new AbortController();

  constructor(
    private deps: FailureDeps,
    private settings: FailureSettings,
    /** Called with each outcome (the tests' window; the log line is written either way). */
    private readonly onOutcome?: (o: FailureOutcome) => void,
  ) {}

  /** New settings and dependencies (a reload); queued samples are sent with them. */
  update(deps: FailureDeps, settings: FailureSettings): void {
    this.deps = deps;
    this.settings = settings;
  }

  offer(sample: FailureSample): void {
    if (this.queue.length >= this.settings.maxQueued) {
      if (!this.full)
        this.deps.log.warn(
          { policyDomain: sample.policy.domain, maxQueued: this.settings.maxQueued },
          'DMARC failure report dropped: the queue is full (failureReports.maxQueued); further drops are not logged until it has room',
        );
      this.full = true;
      return;
    }
    this.full = false;
    // Only what a report can use: a huge header section is not held in memory while queued.
    const h = sample.headers;
    const headers = h.length > this.settings.maxHeaderBytes ? Buffer.from(h.subarray(0, this.settings.maxHeaderBytes)) : h;
    this.queue.push({ ...sample, headers });
    if (!this.draining) this.draining = new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.drain());
  }

  /** Resolves when the queue is empty (close, tests). */
  async idle(): Promise<void> {
    while (this.draining) await this.draining;
  }

  /**
   * Sends what is queued without waiting on DNS: lookups in flight and later ones end at once,
   * so a report whose destination's authorization is not known already is dropped
   * (dns-temperror, logged); one to the domain's own addresses, or an authorized one the cache
   * knows, still goes. (Before, a queue of reports to destinations whose DNS never answers held
   * a stop for maxQueued times a few DNS timeouts.)
   */
  async close(): Promise<void> {
    this.stopping.abort();
    await this.idle();
  }

  private async drain(): Promise<void> {
    try {
      for (let s = this.queue.shift(); s; s = this.queue.shift()) {
        const o = await this.reportOne(s).catch(
          (err: Error): FailureOutcome => ({ policyDomain: s!.policy.domain, status: 'send-failed', to: [], reason: `error: ${err.message}` }),
        );
        const line = { policyDomain: o.policyDomain, status: o.status, to: o.to, reason: o.reason };
        if (o.status === 'sent') this.deps.log.info(line, 'DMARC failure report sent');
        else if (o.status === 'already-reported') this.deps.log.info(line, 'DMARC failure report not sent again for a retried message');
        else this.deps.log.warn(line, 'DMARC failure report not sent');
        this.onOutcome?.(o);
      }
    } finally {
      this.draining = null;
    }
  }

  private async reportOne(s: FailureSample): Promise<FailureOutcome> {
    const { deps } = this;
    const policyDomain = s.policy.domain;
    // Each message once, across Postfix's retries (a later stage tempfailed it) and processes:
    // before the limits, so a retry uses none of them.
    if (s.once === undefined) return this.reportNew(s);
    const seen = `${SEEN}${s.once}`;
    if (!(await deps.store.setIfAbsent(seen, '1', { ttlMs: DEDUPE_MS })))
      return { policyDomain, status: 'already-reported', to: [], reason: 'a delivery attempt of this message was reported before' };
    // A report that did not go out for a passing reason (DNS, the downstream, a stop cutting its
    // lookups short) does not mark the message: its next delivery attempt may report it.
    // Before, the mark stayed and Postfix's retry of it was 'already-reported', never reported.
    const o = await this.reportNew(s).catch(async (err: unknown) => {
      await deps.store.delete(seen).catch(() => undefined);
      throw err;
    });
    if (o.status === 'dns-temperror' || o.status === 'send-failed') await deps.store.delete(seen);
    return o;
  }

  /** A sample not reported before: the limits, the destinations, the report. */
  private async reportNew(s: FailureSample): Promise<FailureOutcome> {
    const { deps, settings: cfg } = this;
    const policyDomain = s.policy.domain;
    const hour = Math.floor(deps.now().getTime() / HOUR_MS);
    // A counter lives a little over its hour, so one that started late in the hour still counts it.
    const ttlMs = 2 * HOUR_MS;
    const org = orgDomain(policyDomain);
    if ((await deps.store.increment(`${DOMAIN_COUNT}${org}:${hour}`, 1, { ttlMs })) > cfg.maxPerDomainPerHour)
      return { policyDomain, status: 'domain-limit', to: [], reason: `${cfg.maxPerDomainPerHour} this hour for ${org}` };
    if ((await deps.store.increment(`${ALL_COUNT}${hour}`, 1, { ttlMs })) > cfg.maxPerHour)
      return { policyDomain, status: 'global-limit', to: [], reason: `${cfg.maxPerHour} this hour` };
    const send: ReportUri[] = [];
    const retry: ReportUri[] = [];
    const refused: ReportUri[] = [];
    // Looked up at once: one after another, a record whose five ruf domains never answer would
    // hold the one sender (and the queue behind it) five times as long.
    const verdicts = await Promise.all(s.policy.ruf.map((uri) => this.authorize(policyDomain, uri)));
    for (const [i, uri] of s.policy.ruf.entries()) {
      const v = verdicts[i];
      (v === 'internal' || v === 'authorized' ? send : v === 'temperror' ? retry : refused).push(uri);
    }
    if (!send.length) {
      if (retry.length) return { policyDomain, status: 'dns-temperror', to: [], reason: `authorization of ${retry.map((u) => u.domain).join(', ')}` };
      return { policyDomain, status: 'no-destination', to: [], reason: refused.length ? `not authorized: ${refused.map((u) => u.address).join(', ')}` : undefined };
    }
    const allowed: ReportUri[] = [];
    for (const u of send) if ((await deps.store.increment(`${TO_COUNT}${u.domain}:${hour}`, 1, { ttlMs })) <= cfg.maxPerDomainPerHour) allowed.push(u);
    if (!allowed.length) return { policyDomain, status: 'destination-limit', to: [], reason: `${cfg.maxPerDomainPerHour} this hour for ${send.map((u) => u.domain).join(', ')}` };
    const dest = { send: allowed };
    const spfDns = s.authFailure === 'signature' ? [] : await this.spfRecords(s);
    const headers = reportHeaders(s.headers, { maxBytes: cfg.maxHeaderBytes, redact: cfg.redactLocalParts, keepDomain: s.headerFrom });
    const compose = (to: readonly string[]) =>
      composeFailureReport({
        from: cfg.from,
        to,
        submitter: cfg.submitter,
        date: deps.now(),
        userAgent: USER_AGENT,
        reportedDomain: s.headerFrom,
        policyDomain,
        authFailure: s.authFailure,
        facts: s.facts,
        // A VERP sender names the recipient (list-bounces+alice=ours.test@...): redacted too.
        mailFrom: cfg.redactLocalParts ? redact(s.mailFrom, s.headerFrom) : s.mailFrom,
        arrivalDate: s.receivedAt,
        sourceIp: s.sourceIp,
        authResults: cfg.redactLocalParts ? redact(s.authResults, s.headerFrom) : s.authResults,
        deliveryResult: deliveryResults[s.disposition],
        spfDns,
        headers,
      });
    const size = compose(dest.send.map((u) => u.address)).length;
    // RFC 7489 7.1: a `!size` limit applies to failure reports too.
    const to = dest.send.filter((u) => u.maxBytes === undefined || size <= u.maxBytes).map((u) => u.address);
    if (!to.length) return { policyDomain, status: 'no-destination', to: [], reason: `${size} bytes is over every ruf size limit` };
    let raw = compose(to);
    if (deps.sign) raw = await deps.sign(raw);
    const sent = await deps.send(cfg.from, to, raw);
    if (!sent.ok) return { policyDomain, status: 'send-failed', to, reason: sent.reason };
    return { policyDomain, status: 'sent', to: sent.accepted };
  }

  /** authorizeDestination, its answers reused for AUTH_CACHE_MS (DNS failures are not kept). */
  private async authorize(policyDomain: string, uri: ReportUri): Promise<DestinationVerdict> {
    if (isInternal(policyDomain, uri.domain)) return 'internal';
    const key = `${policyDomain}\n${uri.domain}`;
    const now = Date.now();
    const hit = this.authCache.get(key);
    if (hit && hit.until > now) return hit.verdict;
    const verdict = await authorizeDestination(this.deps.resolver, policyDomain, uri, this.stopping.signal);
    if (verdict !== 'temperror') {
      // Oldest first out: a Map iterates in insertion order.
      this.authCache.delete(key);
      if (this.authCache.size >= AUTH_CACHE_MAX) this.authCache.delete(this.authCache.keys().next().value as string);
      this.authCache.set(key, { verdict, until: now + AUTH_CACHE_MS });
    }
    return verdict;
  }

  /** RFC 6591 3.2 SPF-DNS: the SPF record of a domain whose SPF check did not pass. */
  private async spfRecords(s: FailureSample): Promise<string[]> {
    const spf = s.facts.spf;
    if (!spf || spf.result === 'pass' || !spf.domain) return [];
    const r = await this.deps.resolver.query(spf.domain, 'TXT', this.stopping.signal);
    if (r.kind !== 'answer') return [];
    return r.records
      .map((strings) => strings.join(''))
      .filter((t) => /^v=spf1(\s|$)/i.test(t))
      .map((t) => `txt : ${spf.domain} : ${t}`);
  }
}
