/**
 * What the end of a message does when its verdict does not deliver it, for every front end
 * that runs the pipeline (listener/deliver.ts, listener/milter/end-of-message.ts), in one
 * order: hold it (quarantine/hold.ts) or send its DSN (notify/bounce.ts), then the notices the
 * bank asks for (notify/notices.ts), then the reply. On the content-filter path each step is
 * idempotent across Postfix retries (the quarantine id, the DSN and notice records in the
 * store), so a failure at any step is a 451 and the retry does only what is left: never held
 * twice, no notice sent twice.
 *
 * The outcome sticks across retries: once held, bounced, discarded or refused, the outcome is
 * written to the store (`settled:` + the retry-stable id) before the notices go, and the
 * content-filter front end (listener/deliver.ts) calls settleEarlier before it runs the
 * pipeline. The milter front end does neither (`remembersOutcome: false`): a message offered
 * again through a milter is a new transaction with a new queue id, whose retry-stable id never
 * matches (docs/milter.md, "Retries"). A retry of a settled message (a held
 * .json, a `settled:` record, or a `dsn-sent:` key) gets the earlier reply and only the notices
 * still missing, without the checks running again: a check that now passed would deliver a
 * message that was held, or one whose sender was told it was not delivered.
 *
 * Returns `accepted` (250 2.7.0: held, bounced, discarded) or `refused` (the verdict's reject
 * or tempfail reply, which the front end writes its own way).
 * A message too big for the quarantine, or one that would take it over maxTotalBytes, is
 * refused with 550 5.7.1 (hold.ts logs why): a refusal is not a loss, and a 451 would grow
 * the Postfix queue for as long as an attacker keeps sending.
 * Fails (rethrown for the front end's 451): QUARANTINE_FAILED,
 * NOTIFY_FAILED (also for a bounce on a bank without a notify target).
 */
import { PostsealError, isPostsealError } from '../errors';
import type { Logger } from '../lib/log';
import type { PipelineResult } from '../pipeline/runner';
import { holdInQuarantine } from '../quarantine/hold';
import type { Quarantine } from '../quarantine/quarantine';
import { retryStableId } from '../transaction/retry-id';
import { replies, withText, type SmtpReply } from '../smtp/replies';
import type { Action, NoticeCategory } from '../pipeline/stage';
import { ResultSet } from '../lib/results';
import { DSN_SENT_KEY } from '../notify/bounce';
import type { Message } from '../transaction/message';
import type { Transaction } from '../transaction/transaction';
import { bounceMessage, type BounceDeps } from '../notify/bounce';
import { authenticSender, sendNotices, NOTICE_MEMORY_MS } from '../notify/notices';

export interface BlockedDeps {
  readonly quarantine?: Quarantine;
  /** The bank's notify target and notify settings; absent when the bank has no notify target. */
  readonly notify?: BounceDeps;
  readonly log: Logger;
  /**
   * Whether the outcome is kept in the store for settleEarlier (default true). The milter
   * says false: the MTA offers a message again as a new transaction with a new queue id,
   * so the record could never be found (docs/milter.md "Retries").
   */
  readonly remembersOutcome?: boolean;
}

export interface BlockedRequest {
  readonly tx: Transaction;
  /** The message as it arrived, before any stage rewrote it. */
  readonly received: Message;
  readonly result: PipelineResult;
  /** retryStableId of the message when the caller has it (stableIdOf). */
  readonly stableId?: string;
}

/** What a retry needs to answer as before and send the notices still missing. */
interface Settled {
  readonly action: Action;
  readonly reply: SmtpReply;
  readonly reason: string;
  readonly category?: NoticeCategory;
  readonly findings: readonly { code: string; detail?: string }[];
  readonly bankName: string;
  readonly quarantineId?: string;
  readonly senderAuthentic: boolean;
}

const SETTLED = 'settled:';

/** The retry-stable id of the message as received (reads the whole message once). */
export function stableIdOf(tx: Transaction, received: Message): Promise<string> {
  return retryStableId({ queueId: tx.queueId, bank: tx.bankName, envelope: tx.envelope, client: tx.client, raw: () => received.spool.openRaw(0) });
}

export type BlockedOutcome = { readonly kind: 'accepted'; readonly reply: SmtpReply; readonly quarantineId?: string } | { readonly kind: 'refused'; readonly reply: SmtpReply };

export async function settleBlocked(deps: BlockedDeps, req: BlockedRequest): Promise<BlockedOutcome> {
  const { tx, received, result } = req;
  const verdict = result.verdict;
  let stable: Promise<string> | undefined = req.stableId === undefined ? undefined : Promise.resolve(req.stableId);
  const stableId = () => (stable ??= stableIdOf(tx, received));
  let outcome: BlockedOutcome;
  let quarantineId: string | undefined;
  switch (verdict.action) {
    case 'quarantine': {
      let held: Awaited<ReturnType<typeof holdInQuarantine>>;
      try {
        held = await holdInQuarantine(deps.quarantine, req, deps.log);
      } catch (err) {
        // Too big or the quarantine full (logged by hold.ts): refused for good, not 451, which would
        // keep it (and an attacker's flood) in the Postfix queue until it expires.
        if (!isPostsealError(err, 'QUARANTINE_TOO_BIG') && !isPostsealError(err, 'QUARANTINE_FULL')) throw err;
        outcome = {
          kind: 'refused',
          reply: withText(replies.contentRejected, `${replies.contentRejected.text} (${err.code === 'QUARANTINE_FULL' ? 'quarantine full' : 'too big for the quarantine'})`),
        };
        break;
      }
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
      // Over the DSN limit, or the DSN refused for good: held in quarantine rather than dropped.
      const quarantine = deps.quarantine;
      const instead = quarantine
        ? async () => {
            const held = await holdInQuarantine(quarantine, req, deps.log);
            quarantineId = held.id;
            return held.reply;
          }
        : undefined;
      outcome = { kind: 'accepted', reply: await bounceMessage(deps.notify, { ...req, stableId: await stableId(), instead }) };
      break;
    }
    case 'discard':
      outcome = { kind: 'accepted', reply: verdict.reply };
      break;
    default:
      outcome = { kind: 'refused', reply: verdict.reply };
  }
  // A tempfail is not a block: the message comes back, and its notices with it if it is blocked then.
  if (verdict.action === 'tempfail') return outcome;
  if (deps.notify && deps.remembersOutcome !== false) {
    const settled: Settled = {
      action: verdict.action,
      reply: outcome.reply,
      reason: verdict.reason,
      category: verdict.category,
      findings: result.findings.map((f) => ({ code: f.code, detail: f.detail })),
      bankName: result.bankName,
      quarantineId,
      senderAuthentic: authenticSender(result.results, tx.envelope.mailFrom),
    };
    const id = await stableId();
    await deps.notify.store
      .set(SETTLED + id, JSON.stringify(settled), { ttlMs: NOTICE_MEMORY_MS })
      .catch((err) => deps.log.warn({ session: tx.id, queueId: tx.queueId, err }, 'outcome not recorded in the store: a retry of this message would run the checks again'));
  }
  if (deps.notify) await sendNotices(deps.notify, { tx, received, result, stableId, quarantineId, bounceReply: verdict.action === 'bounce' ? outcome.reply : undefined });
  return outcome;
}

/**
 * The earlier outcome of this message when Postfix retries one that was settled before
 * (header): the same reply, after the notices still missing; undefined when there is none and
 * the pipeline must run. Throws NOTIFY_FAILED (451) when a missing notice cannot be sent yet.
 */
export async function settleEarlier(deps: BlockedDeps, req: { tx: Transaction; received: Message; stableId: string }): Promise<BlockedOutcome | undefined> {
  const { tx, received, stableId } = req;
  const where = { session: tx.id, queueId: tx.queueId, retryId: stableId };
  const store = deps.notify?.store;
  const lookup = async (key: string) =>
    store?.get(key).catch((err) => {
      deps.log.warn({ ...where, err }, 'cannot ask the store for an earlier outcome of this message; running the checks');
      return undefined;
    });
  let settled: Settled | undefined;
  const text = await lookup(SETTLED + stableId);
  if (text !== undefined) settled = JSON.parse(text) as Settled;
  if (!settled) {
    const held = await deps.quarantine?.get(stableId).catch(() => undefined);
    if (held)
      settled = {
        action: 'quarantine',
        reply: withText(replies.quarantined, `${replies.quarantined.text} as ${held.id}`),
        reason: held.reason,
        category: held.category,
        findings: held.findings.map((f) => {
          const m = /^([^(]+)\((.*)\)$/s.exec(f);
          return m ? { code: m[1], detail: m[2] } : { code: f };
        }),
        bankName: held.decidedBy,
        quarantineId: held.id,
        senderAuthentic: false,
      };
    else if ((await lookup(DSN_SENT_KEY + stableId)) !== undefined)
      settled = { action: 'bounce', reply: replies.bounced, reason: 'an earlier DSN', findings: [], bankName: tx.bankName, senderAuthentic: false };
  }
  if (!settled) return undefined;
  deps.log.info(
    { ...where, verdict: settled.action, reason: settled.reason, quarantineId: settled.quarantineId },
    'a retry of a message settled before: its earlier outcome is kept, the checks do not run again',
  );
  if (deps.notify && settled.category) {
    const verdict = { action: settled.action, reply: settled.reply, reason: settled.reason, fields: [], category: settled.category };
    const result: PipelineResult = { verdict, findings: settled.findings, timings: {}, spools: [], bankName: settled.bankName, results: new ResultSet() };
    await sendNotices(deps.notify, {
      tx,
      received,
      result,
      stableId: () => Promise.resolve(stableId),
      quarantineId: settled.quarantineId,
      bounceReply: settled.action === 'bounce' ? settled.reply : undefined,
      senderAuthentic: settled.senderAuthentic,
    });
  }
  const refused = settled.action === 'reject' || settled.reply.code[0] !== '2';
  return refused ? { kind: 'refused', reply: settled.reply } : { kind: 'accepted', reply: settled.reply, quarantineId: settled.quarantineId };
}
