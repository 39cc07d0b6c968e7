/**
 * dmarc: DMARC (RFC 7489, with the DMARCbis tree walk for the organizational domain) of the
 * single author (From) domain, against the results dkim-verify and spf recorded: mailauth
 * finds the policy record (p, sp, np, t=) and checks relaxed/strict alignment. A failure that
 * a DNS temperror of DKIM or SPF may have caused is a temperror, not a fail.
 *
 * Findings: DMARC_PASS, DMARC_NONE, DMARC_FAIL (policy none), DMARC_FAIL_QUARANTINE,
 * DMARC_FAIL_REJECT (detail "<policy domain> p=<policy>"), DMARC_TEMPERROR,
 * DMARC_TEMPERROR_ENFORCING (the policy is quarantine or reject), DMARC_NOT_CHECKED (no
 * single author domain). The verdict applies dmarc.onReject / onTempError; with quarantine
 * this stage adds X-Postseal-Quarantine. Each result goes to the DMARC result store.
 */
import { evaluateDmarc } from 'mailauth/lib/dmarc';
import type { DNSResolver } from 'mailauth';
import type { Bank } from '../../config/bank-schema';
import { singleAuthor, trusted, type AuthOutcomes, type DmarcOutcome } from '../../lib/authentication-results';
import { mailauthResolver } from '../../lib/dns';
import type { Finding, Stage, StageDeps } from '../../pipeline/stage';
import type { DmarcResultRecord } from '../../store/dmarc-results';
import { clientAddress } from '../spf';

export const QUARANTINE_FIELD = 'X-Postseal-Quarantine';

export function createDmarcStage(bank: Bank, deps: StageDeps): Stage {
  const { resolver, board, dmarcStore } = deps.auth;
  const cfg = bank.dmarc;
  return {
    id: 'dmarc',
    after: ['dkim-verify', 'spf', 'arc-verify'],
    async run(tx, signal) {
      const o = board.of(tx);
      const author = singleAuthor(tx.message);
      if (!author) {
        o.dmarc = { result: 'none', from: '', comment: 'no single author domain' };
        return { findings: [{ code: 'DMARC_NOT_CHECKED', detail: `${tx.message.get('from').length} From fields` }] };
      }
      const { response } = await evaluateDmarc({
        headerFrom: [author.address],
        fromFields: 1,
        spfDomains: o.spf?.result === 'pass' ? [o.spf.domain] : [],
        dkimDomains: (o.dkim ?? []).filter(trusted).map((s) => ({ id: s.b, domain: s.d })),
        resolver: mailauthResolver(resolver, signal) as DNSResolver,
      });
      const outcome = toOutcome(response || undefined, author.domain, o);
      o.dmarc = outcome;
      const enforcing = outcome.policy === 'reject' || outcome.policy === 'quarantine';
      const where = `${outcome.policyDomain ?? author.domain} p=${outcome.policy ?? 'unknown'}`;
      const finding: Finding =
        outcome.result === 'pass'
          ? { code: 'DMARC_PASS', detail: where }
          : outcome.result === 'temperror'
            ? { code: enforcing ? 'DMARC_TEMPERROR_ENFORCING' : 'DMARC_TEMPERROR', detail: where }
            : outcome.result === 'fail'
              ? { code: outcome.policy === 'reject' ? 'DMARC_FAIL_REJECT' : outcome.policy === 'quarantine' ? 'DMARC_FAIL_QUARANTINE' : 'DMARC_FAIL', detail: where }
              : { code: 'DMARC_NONE', detail: author.domain };
      const quarantine =
        outcome.result === 'fail' && ((outcome.policy === 'reject' && cfg.onReject === 'quarantine') || (outcome.policy === 'quarantine' && cfg.onQuarantine === 'quarantine'));
      const disposition = quarantine ? 'quarantine' : outcome.result === 'fail' && outcome.policy === 'reject' && cfg.onReject === 'reject' ? 'reject' : 'none';
      await record(deps, { receivedAt: tx.receivedAt, sourceIp: clientAddress(tx.client), headerFrom: author.domain, policyDomain: outcome.policyDomain, policy: outcome.policy, result: outcome.result, disposition, dkim: (o.dkim ?? []).map((s) => ({ domain: s.d, selector: s.s, result: s.result })), spf: o.spf && { domain: o.spf.domain, result: o.spf.result } }, dmarcStore);
      if (!quarantine) return { findings: [finding] };
      return { findings: [finding], message: tx.message.prepend({ name: QUARANTINE_FIELD, value: `DMARC policy ${where} (${deps.authservId})` }) };
    },
  };
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

async function record(deps: StageDeps, r: DmarcResultRecord, store: StageDeps['auth']['dmarcStore']): Promise<void> {
  try {
    await store.record(r);
  } catch (err) {
    deps.log.error({ err }, 'DMARC result not stored');
  }
}
