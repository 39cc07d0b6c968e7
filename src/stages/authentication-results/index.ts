/**
 * authentication-results: writes the one Authentication-Results field (RFC 8601) with our
 * authserv-id from what dkim-verify, spf, dmarc and arc-verify recorded, after removing every
 * A-R field that already carries our authserv-id (a sender's forgery, RFC 8601 5); foreign
 * ones stay. On originating banks (our own users) the forgeries are removed and nothing is
 * added: the checks are for mail from outside.
 *
 * Findings: AUTHENTICATION_RESULTS_FORGED_REMOVED (detail: how many). Reads: originating.
 */
import type { Bank } from '../../config/bank-schema';
import { formatAuthResults, removeOwnAuthResults, resinfos } from '../../lib/authentication-results';
import type { Finding, Stage, StageDeps } from '../../pipeline/stage';

export const AUTHENTICATION_RESULTS = 'Authentication-Results';

export function createAuthenticationResultsStage(bank: Bank, deps: StageDeps): Stage {
  return {
    id: 'authentication-results',
    after: ['dkim-verify', 'spf', 'dmarc', 'arc-verify', 'header-sanity'],
    async run(tx) {
      const { message, removed } = removeOwnAuthResults(tx.message, deps.authservId);
      const findings: Finding[] = removed ? [{ code: 'AUTHENTICATION_RESULTS_FORGED_REMOVED', detail: `${removed} with authserv-id ${deps.authservId}` }] : [];
      if (bank.originating) return { findings, message };
      const value = formatAuthResults(deps.authservId, resinfos(deps.auth.board.of(tx)));
      return { findings, message: message.prepend({ name: AUTHENTICATION_RESULTS, value }) };
    },
  };
}
