/**
 * arc-verify: validates the ARC chain (RFC 8617 5.2) with mailauth: every ARC-Seal, and the
 * newest ARC-Message-Signature, keys through our resolver. arc=pass|fail|none is recorded for
 * the authentication-results and arc-seal stages (which seals with cv= from it).
 *
 * Findings: ARC_VERIFY_PASS (detail "i=N"), ARC_VERIFY_FAIL (detail: why), ARC_VERIFY_NONE.
 * A failed chain decides nothing by itself. Reads: no bank keys.
 */
import { Readable } from 'node:stream';
import { arc } from 'mailauth/lib/arc';
import { dkimVerify } from 'mailauth/lib/dkim/verify';
import type { ARCData, DNSResolver } from 'mailauth';
import type { Bank } from '../../config/bank-schema';
import type { ArcOutcome } from '../../lib/authentication-results';
import { mailauthResolver } from '../../lib/dns';
import type { FindingCode } from '../../pipeline/findings';
import type { Stage, StageDeps } from '../../pipeline/stage';
import { clientAddress } from '../spf';

const codes: Record<ArcOutcome['result'], FindingCode> = { pass: 'ARC_VERIFY_PASS', fail: 'ARC_VERIFY_FAIL', none: 'ARC_VERIFY_NONE' };

export function createArcVerifyStage(_bank: Bank, deps: StageDeps): Stage {
  const { resolver, board } = deps.auth;
  return {
    id: 'arc-verify',
    after: ['loop-guard', 'header-sanity'],
    async run(tx, signal) {
      if (!tx.message.get('arc-seal').length && !tx.message.get('arc-message-signature').length) {
        board.of(tx).arc = { result: 'none', instance: 0 };
        return { findings: [{ code: 'ARC_VERIFY_NONE' }] };
      }
      const r = mailauthResolver(resolver, signal) as DNSResolver;
      // The ARC chain comes out of mailauth's DKIM parser, which also checks the newest AMS.
      const parsed = await dkimVerify(Readable.from(tx.message.openRaw(), { objectMode: false }), { resolver: r });
      const result = await arc(parsed.arc as ARCData, { resolver: r, ip: clientAddress(tx.client) });
      const status = result.status as { result: ArcOutcome['result']; comment?: string };
      const outcome: ArcOutcome = { result: status.result, instance: Number(result.i || 0), comment: status.comment };
      board.of(tx).arc = outcome;
      return { findings: [{ code: codes[outcome.result], detail: outcome.result === 'fail' ? (outcome.comment ?? 'chain invalid') : `i=${outcome.instance}` }] };
    },
  };
}
