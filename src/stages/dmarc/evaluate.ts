/**
 * One author domain's DMARC evaluation (mailauth finds and applies the policy record), what it
 * means as a finding and a disposition for this bank, its record for the result store, and a
 * failure report offered when the record's fo= and ruf= ask for one (RFC 7489 7.3).
 */
import { createHash } from 'node:crypto';
import type * as MailauthDmarcModule from 'mailauth/lib/dmarc';
import type { DNSResolver } from 'mailauth';
import { formatAuthResults, resinfos, trusted, type AuthOutcomes, type DmarcOutcome } from '../../lib/authentication-results';
import { clientAddress } from '../../lib/client';
import { REPORT_MARKER_FIELD } from '../../lib/dmarc-report/mail';
import { failureToReport, type FailureFacts } from '../../lib/dmarc-report/failure';
import { isHostName, parseDmarcRecord, requestedIntervalSec } from '../../lib/dmarc-report/policy';
import { mailauthResolver } from '../../lib/dns';
import type { Finding, StageDeps } from '../../pipeline/stage';
import type { DmarcResultRecord } from '../../store/dmarc-results';
import { Message } from '../../transaction/message';
import type { Transaction } from '../../transaction/transaction';
import type { DmarcSettings } from './schema';

/** What a failure report needs of mailauth's evaluation beyond the outcome: alignment and the record. */
export interface Evaluation {
  readonly outcome: DmarcOutcome;
  readonly dkimAligned: boolean;
  readonly spfAligned: boolean;
  /** The applied DMARC record's text, when one was found. */
  readonly record?: string;
}

export async function evaluate(domain: string, o: AuthOutcomes, deps: StageDeps, signal: AbortSignal): Promise<Evaluation> {
  const { response } = await mailauthDmarc().evaluateDmarc({
    headerFrom: [`postmaster@${domain}`],
    fromFields: 1,
    spfDomains: o.spf?.result === 'pass' ? [o.spf.domain] : [],
    dkimDomains: (o.dkim ?? []).filter(trusted).map((s) => ({ id: s.b, domain: s.d })),
    resolver: mailauthResolver(deps.resolver, signal) as DNSResolver,
  });
  const r = response || undefined;
  const alignment = (r as { alignment?: { spf?: { result?: unknown }; dkim?: { result?: unknown } } } | undefined)?.alignment;
  const record = (r as { rr?: unknown } | undefined)?.rr;
  return {
    outcome: toOutcome(r, domain, o),
    dkimAligned: Boolean(alignment?.dkim?.result),
    spfAligned: Boolean(alignment?.spf?.result),
    record: typeof record === 'string' ? record : undefined,
  };
}

export function judge(outcome: DmarcOutcome, domain: string, cfg: DmarcSettings): { finding: Finding; disposition: DmarcResultRecord['disposition'] } {
  const enforcing = outcome.policy === 'reject' || outcome.policy === 'quarantine';
  const where = `${outcome.policyDomain ?? domain} p=${outcome.policy ?? 'unknown'}`;
  const finding: Finding =
    outcome.result === 'pass'
      ? { code: 'DMARC_PASS', detail: where }
      : outcome.result === 'temperror'
        ? { code: enforcing ? 'DMARC_TEMPERROR_ENFORCING' : 'DMARC_TEMPERROR', detail: where }
        : outcome.result === 'fail'
          ? { code: outcome.policy === 'reject' ? 'DMARC_FAIL_REJECT' : outcome.policy === 'quarantine' ? 'DMARC_FAIL_QUARANTINE' : 'DMARC_FAIL', detail: where }
          : { code: 'DMARC_NONE', detail: domain };
  const failed = outcome.result === 'fail';
  // Held in our quarantine or marked for Postfix's HOLD: both are a quarantine disposition (RFC 7489 7.2.1.1).
  const quarantines = (v: string) => v === 'quarantine' || v === 'header';
  const quarantine = failed && ((outcome.policy === 'reject' && quarantines(cfg.onReject)) || (outcome.policy === 'quarantine' && quarantines(cfg.onQuarantine)));
  const disposition = quarantine ? 'quarantine' : failed && outcome.policy === 'reject' && cfg.onReject === 'reject' ? 'reject' : 'none';
  return { finding, disposition };
}

/** Which outcome Authentication-Results shows when there are several: the one that weighs most. */
export function severity(o: DmarcOutcome): number {
  if (o.result === 'fail') return o.policy === 'reject' ? 6 : o.policy === 'quarantine' ? 5 : 3;
  return { temperror: 4, permerror: 2, none: 1, pass: 0 }[o.result];
}

type MailauthDmarc = Exclude<Awaited<ReturnType<typeof MailauthDmarcModule.evaluateDmarc>>['response'], false>;

/**
 * mailauth, loaded when the first message is checked: it is a quarter of a process's memory
 * (about 30 MB), and a cluster's primary loads the stage definitions for the bank schema only.
 */
function mailauthDmarc(): typeof MailauthDmarcModule {
  return require('mailauth/lib/dmarc') as typeof MailauthDmarcModule;
}

function toOutcome(r: MailauthDmarc | undefined, from: string, o: AuthOutcomes): DmarcOutcome {
  if (!r) return { result: 'none', from };
  const policy = (['none', 'quarantine', 'reject'] as const).find((p) => p === r.policy);
  let result = r.status.result as DmarcOutcome['result'];
  const comment = (r.status as { comment?: string }).comment;
  // RFC 7489 6.6.2: a check that could not complete might have passed.
  const unfinished = o.spf?.result === 'temperror' || (o.dkim ?? []).some((s) => s.result === 'temperror');
  if (result === 'fail' && unfinished) result = 'temperror';
  return { result, from, policy, policyDomain: r.policyDomain, comment };
}

/**
 * RFC 7489 appendix C policy_evaluated reason: the bank applied less than a failed p=
 * (onReject / onQuarantine tag or quarantine instead of reject): local_policy.
 */
function overrideOf(outcome: DmarcOutcome, disposition: DmarcResultRecord['disposition']): DmarcResultRecord['override'] {
  if (outcome.result !== 'fail' || (outcome.policy !== 'reject' && outcome.policy !== 'quarantine')) return undefined;
  return disposition === outcome.policy ? undefined : 'local_policy';
}

/**
 * The same for each Postfix delivery attempt of one queued message (queue ID, envelope, client,
 * Message-ID) and author domain, so a retry is not counted again (store/dmarc-results.ts
 * RecordOptions.once); undefined without a queue ID (no XFORWARD IDENT): no deduplication.
 */
function retryId(tx: Readonly<Transaction>, domain: string): string | undefined {
  if (!tx.queueId) return undefined;
  const messageId = tx.message.get('message-id').map((f) => Message.value(f).trim());
  return createHash('sha256')
    .update(JSON.stringify([tx.queueId, tx.envelope.mailFrom, tx.envelope.recipients, clientAddress(tx.client) ?? null, messageId, domain]))
    .digest('hex')
    .slice(0, 32);
}

/** DKIM results stored per record (store/dmarc-results.ts caps them too). */
const MAX_STORED_SIGNATURES = 10;

export async function record(
  deps: StageDeps,
  tx: Readonly<Transaction>,
  outcome: DmarcOutcome,
  domain: string,
  disposition: DmarcResultRecord['disposition'],
  o: AuthOutcomes,
  e: Evaluation,
): Promise<void> {
  const appliedRecord = e.record;
  // No loops (docs/dmarc-reports.md): a DMARC report sent by a postseal is not recorded. The
  // marker alone is not enough (anyone can write it): the report must also pass DMARC, so
  // only the domain's owner can keep its own mail out of its reports.
  if (outcome.result === 'pass' && tx.message.get(REPORT_MARKER_FIELD.toLowerCase()).length > 0) return;
  // The domain names the report's file and Subject: anything but a plain host name (a '/' or
  // a quote from a hostile From) is not recorded.
  if (!outcome.policyDomain || !isHostName(outcome.policyDomain)) return;
  const r: DmarcResultRecord = {
    receivedAt: tx.receivedAt,
    sourceIp: clientAddress(tx.client),
    headerFrom: domain,
    policyDomain: outcome.policyDomain,
    policy: outcome.policy,
    result: outcome.result,
    disposition,
    // Only signatures that were verified: those past dkim-verify's maxSignatures carry
    // whatever d= and s= the sender wrote, at any length (the store cuts them too).
    dkim: (o.dkim ?? [])
      .filter((s) => s.reason !== 'signature-limit')
      .slice(0, MAX_STORED_SIGNATURES)
      .map((s) => ({ domain: s.d.slice(0, 253), selector: s.s.slice(0, 63), result: s.result })),
    // The null sender's SPF is HELO's (RFC 7489 appendix C spf scope).
    spf: o.spf && { domain: o.spf.domain, result: o.spf.result, scope: o.spf.mailfrom ? 'mfrom' : 'helo' },
    // policy_evaluated as judged now (relaxed alignment by organizational domain, t=y keys).
    dkimAligned: e.dkimAligned,
    spfAligned: e.spfAligned,
    override: overrideOf(outcome, disposition),
    // The report period follows the ri= of the record applied now (store/dmarc-results.ts).
    requestedIntervalSec: appliedRecord === undefined ? undefined : requestedIntervalSec(appliedRecord),
  };
  try {
    await deps.dmarcStore.record(r, { once: retryId(tx, domain) });
  } catch (err) {
    deps.log.error({ err }, 'DMARC result not stored');
  }
}

/**
 * Offers a failure report (RFC 7489 7.3) when the domain's record asks for one (ruf=, fo=):
 * only queued here (lib/dmarc-report/failure.ts DmarcFailureSink), sent later by the report
 * service, so the message never waits for it. Never about a report (any multipart/report:
 * DSNs, MDNs, ARF and DMARC reports, ours included), so reports cannot loop.
 */
export function offerFailureReport(
  deps: StageDeps,
  tx: Readonly<Transaction>,
  e: Evaluation,
  domain: string,
  disposition: DmarcResultRecord['disposition'],
  o: AuthOutcomes,
): void {
  const sink = deps.dmarcFailures;
  const { outcome } = e;
  if (!sink || !e.record || !outcome.policyDomain || !isHostName(outcome.policyDomain)) return;
  if (outcome.result !== 'pass' && outcome.result !== 'fail') return;
  if (tx.message.get('content-type').some((f) => /^multipart\/report\b/i.test(Message.value(f)))) return;
  const policy = parseDmarcRecord(outcome.policyDomain, e.record);
  if (!policy?.ruf.length) return;
  const facts: FailureFacts = {
    dkimAligned: e.dkimAligned,
    spfAligned: e.spfAligned,
    dkim: (o.dkim ?? []).map((s) => ({ domain: s.d, selector: s.s, result: s.result })),
    spf: o.spf && { domain: o.spf.domain, result: o.spf.result },
  };
  const authFailure = failureToReport(policy.fo, facts);
  if (!authFailure) return;
  sink.offer({
    receivedAt: tx.receivedAt,
    sourceIp: clientAddress(tx.client),
    mailFrom: tx.envelope.mailFrom,
    headerFrom: domain,
    policy,
    authFailure,
    facts,
    authResults: formatAuthResults(deps.authservId, resinfos({ ...o, dmarc: outcome })),
    disposition,
    headers: tx.message.headerBytes(),
    once: retryId(tx, domain),
  });
}
