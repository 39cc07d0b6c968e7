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
 * domain: read differently by readers, so it fails closed). Each result goes to the DMARC result store
 * (and, when the domain asks for failure reports and they are on, to the failure report queue);
 * Authentication-Results shows the strictest one.
 */
import { authorDomains } from '../../lib/author';
import { DMARC_RESULT, authOutcomes, type DmarcOutcome } from '../../lib/authentication-results';
import { defineStage, type Finding, type StageOutcome } from '../../pipeline/stage';
import { evaluate, judge, offerFailureReport, record, severity } from './evaluate';
import { DMARC_FINDINGS, dmarcRules, type DmarcFinding } from './rules';
import { dmarcBankSchema, type DmarcSettings } from './schema';

/** Distinct author domains evaluated per message; real mail has one. */
export const MAX_AUTHOR_DOMAINS = 10;

export const dmarcStage = defineStage<DmarcSettings, DmarcFinding>({
  id: 'dmarc',
  phase: 'check',
  after: ['dkim-verify', 'spf', 'arc-verify'],
  settings: { key: 'dmarc', schema: dmarcBankSchema },
  findings: DMARC_FINDINGS,
  rules: dmarcRules,
  create: (cfg, _bank, deps) => ({
    id: 'dmarc',
    async run(tx, signal, results): Promise<StageOutcome> {
      const o = authOutcomes(results);
      const { domains, unparseable } = authorDomains(tx.message, MAX_AUTHOR_DOMAINS);
      // Fail closed: a From that may hide an author, or names too many, is handled as a p=reject failure (rules.ts).
      if (unparseable) return permerror({ code: 'DMARC_FROM_UNPARSEABLE', detail: unparseable }, domains[0] ?? '');
      if (domains.length > MAX_AUTHOR_DOMAINS)
        return permerror({ code: 'DMARC_TOO_MANY_AUTHORS', detail: `more than ${MAX_AUTHOR_DOMAINS} author domains (at most ${MAX_AUTHOR_DOMAINS} are evaluated)` }, domains[0]);
      if (domains.length === 0) {
        const none: DmarcOutcome = { result: 'none', from: '', comment: 'no author domain' };
        return { findings: [{ code: 'DMARC_NOT_CHECKED', detail: `${tx.message.get('from').length} From fields without an address` }], results: [DMARC_RESULT.entry(none)] };
      }
      const findings: Finding[] = [];
      let strictest: DmarcOutcome | undefined;
      for (const domain of domains) {
        signal.throwIfAborted();
        const evaluation = await evaluate(domain, o, deps, signal);
        const { outcome } = evaluation;
        const { finding, disposition } = judge(outcome, domain, cfg);
        findings.push(finding);
        if (!strictest || severity(outcome) > severity(strictest)) strictest = outcome;
        // A temperror the bank answers with a tempfail is evaluated again on Postfix's retry:
        // that result is the one recorded (with the retry id, only once).
        if (!(finding.code === 'DMARC_TEMPERROR_ENFORCING' && cfg.onTempError === 'tempfail')) await record(deps, tx, outcome, domain, disposition, o, evaluation);
        try {
          offerFailureReport(deps, tx, evaluation, domain, disposition, o);
        } catch (err) {
          // A report is never worth the message: whatever went wrong, the mail goes on.
          deps.log.error({ err }, 'DMARC failure report not queued');
        }
      }
      return { findings, results: strictest ? [DMARC_RESULT.entry(strictest)] : [] };
    },
  }),
});

function permerror(finding: Finding, from: string): StageOutcome {
  return { findings: [finding], results: [DMARC_RESULT.entry({ result: 'permerror', from, comment: finding.detail })] };
}
