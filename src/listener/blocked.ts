/**
 * What the end of a message does when its verdict does not deliver it, for every front end
 * that runs the pipeline (listener/deliver.ts, listener/milter/end-of-message.ts), in one
 * order: hold it (quarantine/hold.ts) or send its DSN (notify/bounce.ts), then the notices the
 * bank asks for (notify/notices.ts), then the reply. Each step is idempotent across Postfix retries (the
 * quarantine id, the DSN and notice records in the store), so a failure at any step is a 451
 * and the retry does only what is left: never held twice, no notice sent twice.
 *
 * Returns `accepted` (250 2.7.0: held, bounced, discarded) or `refused` (the verdict's reject
 * or tempfail reply, which the front end writes its own way).
 * Fails (rethrown for the front end's 451): QUARANTINE_FAILED, QUARANTINE_TOO_BIG,
 * NOTIFY_FAILED (also for a bounce on a bank without a notify target).
 */
import { PostsealError } from '../errors';
import type { Logger } from '../lib/log';
import type { PipelineResult } from '../pipeline/runner';
import { holdInQuarantine } from '../quarantine/hold';
import type { Quarantine } from '../quarantine/quarantine';
import { retryStableId } from '../transaction/retry-id';
import type { SmtpReply } from '../smtp/replies';
import type { Message } from '../transaction/message';
import type { Transaction } from '../transaction/transaction';
import { bounceMessage, type BounceDeps } from '../notify/bounce';
import { sendNotices } from '../notify/notices';

export interface BlockedDeps {
  readonly quarantine?: Quarantine;
  /** The bank's notify target and notify settings; absent when the bank has no notify target. */
  readonly notify?: BounceDeps;
  readonly log: Logger;
}

export interface BlockedRequest {
  readonly tx: Transaction;
  /** The message as it arrived, before any stage rewrote it. */
  readonly received: Message;
  readonly result: PipelineResult;
}

export type BlockedOutcome = { readonly kind: 'accepted'; readonly reply: SmtpReply; readonly quarantineId?: string } | { readonly kind: 'refused'; readonly reply: SmtpReply };

export async function settleBlocked(deps: BlockedDeps, req: BlockedRequest): Promise<BlockedOutcome> {
  const { tx, received, result } = req;
  const verdict = result.verdict;
  let stable: Promise<string> | undefined;
  const stableId = () => (stable ??= retryStableId({ queueId: tx.queueId, bank: tx.bankName, envelope: tx.envelope, client: tx.client, raw: () => received.spool.openRaw(0) }));
  let outcome: BlockedOutcome;
  let quarantineId: string | undefined;
  switch (verdict.action) {
    case 'quarantine': {
      const held = await holdInQuarantine(deps.quarantine, req, deps.log);
      quarantineId = held.id;
      stable = Promise.resolve(held.id);
      outcome = { kind: 'accepted', reply: held.reply, quarantineId };
      break;
    }
    case 'bounce': {
      if (!deps.notify) {
        deps.log.error(
          { session: tx.id, queueId: tx.queueId },
          `bank ${tx.bankName} has no notify target for the DSN of a bounce verdict; set notify in its bank file (the message stays in the Postfix queue)`,
        );
        throw new PostsealError('NOTIFY_FAILED', `bank ${tx.bankName} has no notify target`);
      }
      outcome = { kind: 'accepted', reply: await bounceMessage(deps.notify, { ...req, stableId: await stableId() }) };
      break;
    }
    case 'discard':
      outcome = { kind: 'accepted', reply: verdict.reply };
      break;
    default:
      outcome = { kind: 'refused', reply: verdict.reply };
  }
  // A tempfail is not a block: the message comes back, and its notices with it if it is blocked then.
  if (verdict.action !== 'tempfail' && deps.notify)
    await sendNotices(deps.notify, { tx, received, result, stableId, quarantineId, bounceReply: verdict.action === 'bounce' ? outcome.reply : undefined });
  return outcome;
}
