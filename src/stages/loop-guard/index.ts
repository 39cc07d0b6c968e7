/**
 * loop-guard: stops mail that circles between Postfix and postseal, the classic result of a
 * reinjection service that forgot `-o content_filter=` (FILTER_README).
 *
 * - More Received: fields than loopGuard.maxReceived (RFC 5321 6.3): LOOP_GUARD_TOO_MANY_HOPS.
 * - Our trace field "X-Postseal-Trace: <authservId> <bank>" already present for this bank:
 *   LOOP_GUARD_TRACE_SEEN. Otherwise, with loopGuard.traceHeader, the field is added.
 * Both findings become 554 5.4.6 (its rules). Reads: loopGuard.*.
 */
import { defineStage, type Finding } from '../../pipeline/stage';
import { replies } from '../../smtp/replies';
import { Message } from '../../transaction/message';
import { loopGuardBankSchema, type LoopGuardSettings } from './schema';

export const TRACE_FIELD = 'X-Postseal-Trace';

const FINDINGS = ['LOOP_GUARD_TOO_MANY_HOPS', 'LOOP_GUARD_TRACE_SEEN'] as const;
const loop = () => ({ action: 'reject' as const, reply: replies.mailLoop });

export const loopGuardStage = defineStage<LoopGuardSettings, (typeof FINDINGS)[number]>({
  id: 'loop-guard',
  phase: 'check',
  settings: { key: 'loopGuard', schema: loopGuardBankSchema },
  findings: FINDINGS,
  rules: { LOOP_GUARD_TOO_MANY_HOPS: loop, LOOP_GUARD_TRACE_SEEN: loop },
  create({ maxReceived, traceHeader }, _bank, deps) {
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
  },
});
