/**
 * authentication-results: writes the one Authentication-Results field (RFC 8601) with our
 * authserv-id from what dkim-verify, spf, dmarc and arc-verify recorded, after removing every
 * A-R field that already carries our authserv-id (a sender's forgery, RFC 8601 5); foreign
 * ones stay. On originating banks (our own users) the forgeries are removed and nothing is
 * added: the checks are for mail from outside.
 *
 * Findings: AUTHENTICATION_RESULTS_FORGED_REMOVED (detail: how many). Reads: originating.
 */
import { authOutcomes, formatAuthResults, removeOwnAuthResults, resinfos } from '../../lib/authentication-results';
import { defineStage, type Finding } from '../../pipeline/stage';

export const AUTHENTICATION_RESULTS = 'Authentication-Results';

const FINDINGS = ['AUTHENTICATION_RESULTS_FORGED_REMOVED'] as const;

export const authenticationResultsStage = defineStage<undefined, (typeof FINDINGS)[number]>({
  id: 'authentication-results',
  phase: 'edit',
  findings: FINDINGS,
  create: (_settings, bank, deps) => ({
    id: 'authentication-results',
    async run(tx, _signal, results) {
      const { message, removed } = removeOwnAuthResults(tx.message, deps.authservId);
      const findings: Finding[] = removed ? [{ code: 'AUTHENTICATION_RESULTS_FORGED_REMOVED', detail: `${removed} with authserv-id ${deps.authservId}` }] : [];
      if (bank.originating) return { findings, message };
      const value = formatAuthResults(deps.authservId, resinfos(authOutcomes(results)));
      return { findings, message: message.prepend({ name: AUTHENTICATION_RESULTS, value }) };
    },
  }),
});
