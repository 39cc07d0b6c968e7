/**
 * dmarc: DMARC (RFC 7489, with the DMARCbis tree walk for the organizational domain) of every
 * author (From) domain, against the results dkim-verify and spf recorded: mailauth finds the
 * policy record (p, sp, np, t=) and checks relaxed/strict alignment. A failure that a DNS
 * temperror of DKIM or SPF may have caused is a temperror, not a fail.
 *
 * Several author domains (two From fields, two addresses in one, a group) are each evaluated
 * and each gives its finding, so the strictest policy decides (RFC 7489 6.6.1): a second From
 * field cannot hide a p=reject domain. More than MAX_AUTHOR_DOMAINS is DMARC_TOO_MANY_AUTHORS
 * (rejected like a p=reject failure), so that a message cannot make us look up a thousand.
 *
 * Findings: DMARC_PASS, DMARC_NONE, DMARC_FAIL (policy none), DMARC_FAIL_QUARANTINE,
 * DMARC_FAIL_REJECT (detail "<policy domain> p=<policy>"), DMARC_TEMPERROR,
 * DMARC_TEMPERROR_ENFORCING (the policy is quarantine or reject), DMARC_NOT_CHECKED (no author
 * domain), DMARC_TOO_MANY_AUTHORS, DMARC_FROM_UNPARSEABLE (a From with an "@" that yields no
 * domain: read differently by readers, so it fails closed). The verdict applies dmarc.onReject / onTempError; with
 * quarantine this stage adds X-Postseal-Quarantine. Each result goes to the DMARC result store;
 * Authentication-Results shows the strictest one.
 */
import { evaluateDmarc } from 'mailauth/lib/dmarc';
import type { DNSResolver } from 'mailauth';
import type { Bank } from '../../config/bank-schema';
import { trusted, type AuthOutcomes, type DmarcOutcome } from '../../lib/authentication-results';
import { authorDomains } from '../../lib/author';
import { mailauthResolver } from '../../lib/dns';
import type { Finding, Stage, StageDeps } from '../../pipeline/stage';
import type { DmarcResultRecord } from '../../store/dmarc-results';
import type { Transaction } from '../../transaction/transaction';
import { clientAddress } from '../../lib/client';

export const QUARANTINE_FIELD = 'X-Postseal-Quarantine';

/** Distinct author domains evaluated per message; real mail has one. */
export const MAX_AUTHOR_DOMAINS = 10;

export function createDmarcStage(bank: Bank, deps: StageDeps): Stage {
  const { board } = deps.auth;
  const cfg = bank.dmarc;
  return {
    id: 'dmarc',
    after: ['dkim-verify', 'spf', 'arc-verify'],
    async run(tx, signal) {
      const o = board.of(tx);
      const { domains, unparseable } = authorDomains(tx.message, MAX_AUTHOR_DOMAINS);
      // Fail closed: a From that may hide an author, or names too many, is treated as a p=reject failure.
      if (unparseable) return unreadable(tx, o, cfg, deps, { code: 'DMARC_FROM_UNPARSEABLE', detail: unparseable }, domains[0] ?? '');
      if (domains.length > MAX_AUTHOR_DOMAINS) {
        return unreadable(
          tx,
          o,
          cfg,
          deps,
          { code: 'DMARC_TOO_MANY_AUTHORS', detail: `more than ${MAX_AUTHOR_DOMAINS} author domains (at most ${MAX_AUTHOR_DOMAINS} are evaluated)` },
          domains[0],
        );
      }
      if (domains.length === 0) {
        o.dmarc = { result: 'none', from: '', comment: 'no author domain' };
        return { findings: [{ code: 'DMARC_NOT_CHECKED', detail: `${tx.message.get('from').length} From fields without an address` }] };
      }
      const findings: Finding[] = [];
      let strictest: DmarcOutcome | undefined;
      let quarantine: string | undefined;
      for (const domain of domains) {
        signal.throwIfAborted();
        const outcome = await evaluate(domain, o, deps, signal);
        const { finding, disposition } = judge(outcome, domain, cfg);
        findings.push(finding);
        if (!strictest || severity(outcome) > severity(strictest)) strictest = outcome;
        if (disposition === 'quarantine') quarantine ??= finding.detail;
        await record(deps, tx, outcome, domain, disposition, o);
      }
      o.dmarc = strictest;
      if (!quarantine) return { findings };
      return { findings, message: tx.message.prepend({ name: QUARANTINE_FIELD, value: `DMARC policy ${quarantine} (${deps.authservId})` }) };
    },
  };
}

/** DMARC_FROM_UNPARSEABLE and DMARC_TOO_MANY_AUTHORS: permerror, and handled as onReject says (the verdict rejects, or quarantined here). */
function unreadable(tx: Readonly<Transaction>, o: AuthOutcomes, cfg: Bank['dmarc'], deps: StageDeps, finding: Finding, from: string) {
  o.dmarc = { result: 'permerror', from, comment: finding.detail };
  if (cfg.onReject !== 'quarantine') return { findings: [finding] };
  return { findings: [finding], message: tx.message.prepend({ name: QUARANTINE_FIELD, value: `DMARC ${finding.detail ?? ''} (${deps.authservId})`.replace(/[\r\n]+/g, ' ') }) };
}

async function evaluate(domain: string, o: AuthOutcomes, deps: StageDeps, signal: AbortSignal): Promise<DmarcOutcome> {
  const { response } = await evaluateDmarc({
    headerFrom: [`postmaster@${domain}`],
    fromFields: 1,
    spfDomains: o.spf?.result === 'pass' ? [o.spf.domain] : [],
    dkimDomains: (o.dkim ?? []).filter(trusted).map((s) => ({ id: s.b, domain: s.d })),
    resolver: mailauthResolver(deps.auth.resolver, signal) as DNSResolver,
  });
  return toOutcome(response || undefined, domain, o);
}

function judge(outcome: DmarcOutcome, domain: string, cfg: Bank['dmarc']): { finding: Finding; disposition: DmarcResultRecord['disposition'] } {
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
  const quarantine = failed && ((outcome.policy === 'reject' && cfg.onReject === 'quarantine') || (outcome.policy === 'quarantine' && cfg.onQuarantine === 'quarantine'));
  const disposition = quarantine ? 'quarantine' : failed && outcome.policy === 'reject' && cfg.onReject === 'reject' ? 'reject' : 'none';
  return { finding, disposition };
}

/** Which outcome Authentication-Results shows when there are several: the one that weighs most. */
function severity(o: DmarcOutcome): number {
  if (o.result === 'fail') return o.policy === 'reject' ? 6 : o.policy === 'quarantine' ? 5 : 3;
  return { temperror: 4, permerror: 2, none: 1, pass: 0 }[o.result];
}

type MailauthDmarc = Exclude<Awaited<ReturnType<typeof evaluateDmarc>>['response'], false>;

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

async function record(
  deps: StageDeps,
  tx: Readonly<Transaction>,
  outcome: DmarcOutcome,
  domain: string,
  disposition: DmarcResultRecord['disposition'],
  o: AuthOutcomes,
): Promise<void> {
  const r: DmarcResultRecord = {
    receivedAt: tx.receivedAt,
    sourceIp: clientAddress(tx.client),
    headerFrom: domain,
    policyDomain: outcome.policyDomain,
    policy: outcome.policy,
    result: outcome.result,
    disposition,
    dkim: (o.dkim ?? []).map((s) => ({ domain: s.d, selector: s.s, result: s.result })),
    spf: o.spf && { domain: o.spf.domain, result: o.spf.result },
  };
  try {
    await deps.auth.dmarcStore.record(r);
  } catch (err) {
    deps.log.error({ err }, 'DMARC result not stored');
  }
}
