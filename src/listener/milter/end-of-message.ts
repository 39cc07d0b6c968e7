/**
 * End of message on a milter listener (SMFIC_BODYEOB): the spooled message goes through the
 * bank's pipeline exactly as on the SMTP path (listener/deliver.ts), and the outcome becomes
 * the milter's answer instead of a reinjection:
 *
 * - pass, tag, quarantine: the modifications that make the MTA's copy the pipeline's
 *   (modifications.ts), then SMFIR_CONTINUE; the MTA queues it once, no second pass;
 * - reject, tempfail: SMFIR_REPLYCODE with the verdict's reply (smtp/replies.ts);
 * - discard: SMFIR_DISCARD; quarantine and bounce: the message is held in postseal's quarantine
 *   (quarantine/hold.ts), or its DSN sent through the bank's notify target (notify/bounce.ts),
 *   with the bank's notices, as on the SMTP path (listener/blocked.ts), then SMFIR_DISCARD, so
 *   Postfix keeps no copy;
 * - too big (spool maxSizeBytes, spool.maxHeaderBytes): SMFIR_REPLYCODE 552 5.3.4; more than
 *   MAX_HEADER_EDITS fields to remove or rewrite: 550 5.6.0 (each costs Postfix a header pass);
 * - a failure (stage error or timeout, message deadline, spool not writable, a modification
 *   the MTA did not allow): listener milter.failureAction, tempfail with the error's reply
 *   from smtp/error-replies.ts, or accept the message unchanged;
 * - the MTA aborted or went away: no answer (nobody waits for one).
 *
 * Writes the one log line per message (STYLE.md §12) and reports to ctx.telemetry as the SMTP
 * path does; removes the spool files.
 */
import { receivedTransaction } from '../received';
import type { ListenerConfig } from '../../config/main-schema';
import { errorCodes, isPostsealError, PostsealError } from '../../errors';
import { errorFields } from '../../lib/log';
import { Action as Act, Reply, replyCode, simpleReply } from '../../lib/milter/protocol';
import { noTelemetry, type MessageReport } from '../../lib/telemetry';
import type { PipelineResult } from '../../pipeline/runner';
import { settleBlocked } from '../blocked';
import { finishMessage, logSpoolFailure, recordResult } from '../message-record';
import { delivers } from '../../pipeline/verdict';
import { replyForError } from '../../smtp/error-replies';
import { formatReply, type SmtpReply } from '../../smtp/replies';
import type { Spool } from '../../transaction/spool';
import type { ClientInfo, Envelope } from '../../transaction/transaction';
import type { SessionContext } from '../session';
import { modificationsFor, type Modifications } from './modifications';

/** Header fields a message may need removed or rewritten through the milter (see endOfMessage). */
export const MAX_HEADER_EDITS = 100;

export interface EndOfMessageInput {
  /** The spool being written from the MTA's header and body packets. */
  spool: Promise<Spool>;
  envelope: Envelope;
  client: ClientInfo;
  peer: string;
  id: string;
  listener: ListenerConfig;
  bankName: string;
  bankRule: string;
  ctx: SessionContext;
  /** The header did not fit in spool.maxHeaderBytes. */
  headerTooBig: boolean;
  /** Negotiated: header values carry their leading space (SMFIP_HDR_LEADSPC). */
  leadSpace: boolean;
  /** SMFIF_* actions the MTA allowed. */
  actions: number;
  /** Aborted when the MTA sends SMFIC_ABORT or disconnects. */
  aborted: AbortSignal;
}

/** The packets to send, in order; empty when the MTA is no longer waiting. */
export async function endOfMessage(input: EndOfMessageInput): Promise<Buffer[]> {
  const { ctx } = input;
  const bank = ctx.bank;
  const started = performance.now();
  const telemetry = ctx.telemetry ?? noTelemetry;
  telemetry.inFlight(1);
  let result: PipelineResult | undefined;
  let mods: Modifications | undefined;
  let replyClass: MessageReport['replyClass'] = '4';
  let replyText = '';
  const spools: Spool[] = [];
  const record: Record<string, unknown> = {
    session: input.id,
    queueId: input.client.ident,
    port: input.listener.port,
    protocol: 'milter',
    bankRule: input.bankRule,
    from: input.envelope.mailFrom,
    rcpts: input.envelope.recipients.length,
    client: input.client.addr,
  };
  const deadline = new AbortController();
  const onAbort = () => deadline.abort(new PostsealError('UPSTREAM_ABORTED', 'the MTA aborted the message'));
  input.aborted.addEventListener('abort', onAbort, { once: true });
  const deadlineTimer = setTimeout(() => deadline.abort(new PostsealError('DEADLINE_EXCEEDED', 'message deadline passed')), bank.timeouts.messageDeadlineMs);
  try {
    const spool = await input.spool;
    spools.push(spool);
    record.size = spool.size;
    if (input.headerTooBig) throw new PostsealError('HEADER_TOO_BIG', 'header section longer than spool.maxHeaderBytes');
    const tx = receivedTransaction(input, bank, spool);
    const original = tx.message;
    // No settleEarlier (listener/blocked.ts) here: a message the MTA offers again is a new
    // transaction with a new queue id, so its retry-stable id never matches an earlier one and
    // the lookup (a hash of the message, a store read, a stat) would be work for nothing.
    const blockedDeps = { quarantine: ctx.quarantine, notify: ctx.bounce, log: ctx.log, remembersOutcome: false };
    result = await ctx.pipeline.run(tx, deadline.signal);
    spools.push(...result.spools);
    const { verdict } = result;
    recordResult(record, result);
    if (input.aborted.aborted) throw new PostsealError('UPSTREAM_ABORTED', 'the MTA aborted the message');
    if (verdict.action === 'tempfail' && verdict.reason in errorCodes) return failed(verdict.reply);
    if (!delivers(verdict.action)) {
      // Held, bounced or discarded by postseal as on the SMTP path (with the bank's notices), then dropped by the MTA.
      const blocked = await settleBlocked(blockedDeps, { tx, received: original, result });
      if (blocked.kind === 'refused') return answer(blocked.reply);
      if (blocked.quarantineId) record.quarantineId = blocked.quarantineId;
      replyClass = '2';
      replyText = `discard (${formatReply(blocked.reply)})`;
      return [simpleReply(Reply.DISCARD)];
    }
    mods = await modificationsFor(original, tx.message, input.leadSpace, deadline.signal);
    // Postfix finds each field to remove or rewrite by a pass over the header from its top
    // (cleanup_milter.c), so n of them cost it n passes: 4,000 forged X-Postseal-Alert fields
    // took its cleanup 1.3 s, 16,000 over 20 s, and a 1 MiB header of them minutes of CPU per
    // message, a load any sender could make. Honest mail needs a few (a forged
    // Authentication-Results, other hops' X-Spam-* fields, a Subject tag).
    const edits = mods.changed.length + mods.removed.length;
    if (edits > MAX_HEADER_EDITS) throw new PostsealError('MILTER_TOO_MANY_EDITS', `${edits} header fields to remove or rewrite, at most ${MAX_HEADER_EDITS}`);
    record.modifications = { added: mods.added, changed: mods.changed, removed: mods.removed, bodyReplaced: mods.bodyReplaced };
    const missing = missingActions(mods, input.actions);
    if (missing) throw new PostsealError('MILTER_PROTOCOL', `the MTA did not allow ${missing}, which this message needs`);
    replyClass = '2';
    replyText = 'continue';
    return [...mods.packets, simpleReply(Reply.CONTINUE)];
  } catch (err) {
    if (isPostsealError(err, 'UPSTREAM_ABORTED') || input.aborted.aborted) {
      Object.assign(record, errorFields(err));
      replyText = 'none (the MTA aborted the message)';
      return [];
    }
    Object.assign(record, errorFields(err));
    if (isPostsealError(err, 'MESSAGE_TOO_BIG') || isPostsealError(err, 'HEADER_TOO_BIG') || isPostsealError(err, 'MILTER_TOO_MANY_EDITS')) return answer(replyForError(err));
    logSpoolFailure(ctx, err, { session: input.id, queueId: input.client.ident });
    return failed(replyForError(err));
  } finally {
    clearTimeout(deadlineTimer);
    input.aborted.removeEventListener('abort', onAbort);
    await finishMessage(ctx, telemetry, { record, spools, bankName: input.bankName, result, replyText, replyClass, started, measuredFrom: started });
  }

  function answer(reply: SmtpReply): Buffer[] {
    replyText = formatReply(reply);
    replyClass = reply.code[0] === '5' ? '5' : reply.code[0] === '2' ? '2' : '4';
    return [replyCode(reply.code, reply.enhanced, reply.text)];
  }

  /** A failure of ours: the listener's failureAction decides, never a 5xx. */
  function failed(reply: SmtpReply): Buffer[] {
    if (input.listener.milter?.failureAction === 'accept') {
      record.failureAction = 'accept';
      replyClass = '2';
      replyText = `continue unchanged (failureAction accept; would have been ${formatReply(reply)})`;
      return [simpleReply(Reply.CONTINUE)];
    }
    return answer(reply.code[0] === '5' ? replyForError(undefined) : reply);
  }
}

/** The SMFIF_* action a modification needs that the MTA did not grant, by name; null when all are granted. */
function missingActions(mods: Modifications, actions: number): string | null {
  const need: [boolean, number, string][] = [
    [mods.added.length > 0, Act.ADDHDRS, 'SMFIF_ADDHDRS'],
    [mods.changed.length + mods.removed.length > 0, Act.CHGHDRS, 'SMFIF_CHGHDRS'],
    [mods.bodyReplaced, Act.CHGBODY, 'SMFIF_CHGBODY'],
  ];
  const missing = need.filter(([needed, flag]) => needed && (actions & flag) === 0).map(([, , name]) => name);
  return missing.length ? missing.join(', ') : null;
}
