/**
 * spf: SPF (RFC 7208) of the client that Postfix passed with XFORWARD (ADDR, HELO) for the
 * MAIL FROM domain, or the HELO name for the null sender; lib/spf evaluates (RFC 7208 limits,
 * aborted with the stage) through our resolver. XFORWARD is only believed from
 * trusted peers (listener/session.ts): without it there is nothing to check, so the result
 * is spf=none with SPF_NOT_CHECKED and a warning, never an evaluation of 127.0.0.1.
 *
 * Findings: SPF_PASS, SPF_FAIL, SPF_SOFTFAIL, SPF_NEUTRAL, SPF_NONE, SPF_TEMPERROR,
 * SPF_PERMERROR, SPF_NOT_CHECKED; detail "domain client-ip". None decides the verdict here
 * (DMARC uses the result). Reads: no bank keys.
 */
import { SPF_RESULT, type SpfOutcome } from '../../lib/authentication-results';
import { clientAddress, known } from '../../lib/client';
import { checkSpf } from '../../lib/spf';
import { defineStage } from '../../pipeline/stage';

const FINDINGS = ['SPF_PASS', 'SPF_FAIL', 'SPF_SOFTFAIL', 'SPF_NEUTRAL', 'SPF_NONE', 'SPF_NOT_CHECKED', 'SPF_TEMPERROR', 'SPF_PERMERROR'] as const;

const codes: Record<SpfOutcome['result'], (typeof FINDINGS)[number]> = {
  pass: 'SPF_PASS',
  fail: 'SPF_FAIL',
  softfail: 'SPF_SOFTFAIL',
  neutral: 'SPF_NEUTRAL',
  none: 'SPF_NONE',
  temperror: 'SPF_TEMPERROR',
  permerror: 'SPF_PERMERROR',
};

export const spfStage = defineStage<undefined, (typeof FINDINGS)[number]>({
  id: 'spf',
  phase: 'check',
  after: ['loop-guard', 'header-sanity'],
  findings: FINDINGS,
  create: (_settings, _bank, deps) => ({
    id: 'spf',
    async run(tx, signal) {
      const ip = clientAddress(tx.client);
      const sender = tx.envelope.mailFrom;
      const helo = known(tx.client.helo);
      if (!ip) {
        deps.log.warn(
          { tx: tx.id, peer: tx.peerAddress },
          'SPF not checked: no client address from a trusted XFORWARD (smtp_send_xforward_command=yes on the content_filter transport?)',
        );
        const none: SpfOutcome = { result: 'none', domain: '', mailfrom: sender || undefined, helo, comment: 'no client address from XFORWARD' };
        return { findings: [{ code: 'SPF_NOT_CHECKED', detail: `peer ${tx.peerAddress}` }], results: [SPF_RESULT.entry(none)] };
      }
      const r = await checkSpf({ ip, sender, helo, resolver: deps.resolver, signal, receiver: deps.authservId });
      const outcome: SpfOutcome = { result: r.result, domain: r.domain, mailfrom: sender || undefined, helo, comment: r.comment };
      return { findings: [{ code: codes[r.result], detail: `${r.domain} ${ip}` }], results: [SPF_RESULT.entry(outcome)] };
    },
  }),
});
