/**
 * loop-guard: stops mail that circles between Postfix and postseal, the classic result of a
 * reinjection service that forgot `-o content_filter=` (FILTER_README).
 *
 * - More Received: fields than loopGuard.maxReceived (RFC 5321 6.3): LOOP_GUARD_TOO_MANY_HOPS.
 * - Our trace field "X-Postseal-Trace: <authservId> <bank>" already present for this bank:
 *   LOOP_GUARD_TRACE_SEEN. Otherwise, with loopGuard.traceHeader, the field is added.
 * Both findings become 554 5.4.6 in the verdict. Reads: loopGuard.*.
 */
import type { Bank } from '../../config/bank-schema';
import type { Finding, Stage, StageDeps } from '../../pipeline/stage';
import { Message } from '../../transaction/message';

export const TRACE_FIELD = 'X-Postseal-Trace';

export function createLoopGuardStage(bank: Bank, deps: StageDeps): Stage {
  const { maxReceived, traceHeader } = bank.loopGuard;
  const ownTrace = `${deps.authservId} ${deps.bankName}`.toLowerCase();
  return {
    id: 'loop-guard',
    async run(tx) {
      const findings: Finding[] = [];
      const hops = tx.message.get('received').length;
      if (hops > maxReceived) findings.push({ code: 'LOOP_GUARD_TOO_MANY_HOPS', detail: `${hops} Received fields, limit ${maxReceived}` });
      const seen = tx.message.get(TRACE_FIELD).some((f) => Message.value(f).toLowerCase().replace(/\s+/g, ' ') === ownTrace);
      if (seen) findings.push({ code: 'LOOP_GUARD_TRACE_SEEN', detail: `${TRACE_FIELD} ${ownTrace} present` });
      if (findings.length || !traceHeader) return { findings };
      return { findings, message: tx.message.prepend({ name: TRACE_FIELD, value: `${deps.authservId} ${deps.bankName}` }) };
    },
  };
}
