/**
 * What the end of a message does with a quarantine verdict, for every front end that runs the
 * pipeline (the SMTP listener's deliver.ts, and a milter): hold the message as it was received
 * (not our rewrites) with its envelope, client and findings, and answer 250 2.7.0 naming the
 * quarantine id, so Postfix logs "status=sent (250 2.7.0 Ok, held in quarantine as ID)" and
 * the postmaster can find it. The message is not delivered.
 *
 * Fails (rethrown, after one log line that names the folder, the errno and the fix) with
 * QUARANTINE_TOO_BIG or QUARANTINE_FULL (the caller refuses the message), or with
 * QUARANTINE_FAILED (the caller's 451 through smtp/error-replies.ts):
 * Postfix keeps the message and retries, and the retry is recognised (quarantine.ts).
 */
import { PostsealError, isPostsealError } from '../errors';
import type { Logger } from '../lib/log';
import type { PipelineResult } from '../pipeline/runner';
import { replies, withText, type SmtpReply } from '../smtp/replies';
import { Message } from '../transaction/message';
import type { Transaction } from '../transaction/transaction';
import type { Quarantine } from './quarantine';

export interface HoldRequest {
  readonly tx: Transaction;
  /** The message as it arrived, before any stage rewrote it (its spool is the received bytes). */
  readonly received: Message;
  readonly result: PipelineResult;
}

const HEADER_TEXT_MAX = 200;

function headerText(m: Message, name: string): string | undefined {
  const f = m.get(name)[0];
  return f
    ? Message.value(f)
        .replace(/[^\x20-\x7e]/g, '?')
        .slice(0, HEADER_TEXT_MAX)
    : undefined;
}

export async function holdInQuarantine(quarantine: Quarantine | undefined, req: HoldRequest, log: Logger): Promise<{ id: string; reply: SmtpReply }> {
  const { tx, received, result } = req;
  const where = { session: tx.id, queueId: tx.queueId };
  try {
    if (!quarantine) throw new PostsealError('QUARANTINE_FAILED', 'this listener has no quarantine (a bug: main.ts gives every bank one)');
    const spool = received.spool;
    const held = await quarantine.hold({
      session: tx.id,
      queueId: tx.queueId,
      bank: tx.bankName,
      decidedBy: result.bankName,
      reason: result.verdict.reason,
      category: result.verdict.category,
      findings: result.findings.map((f) => (f.detail ? `${f.code}(${f.detail})` : f.code)),
      envelope: tx.envelope,
      client: tx.client,
      peer: tx.peerAddress,
      size: spool.size,
      raw: () => spool.openRaw(0),
      from: headerText(received, 'from'),
      subject: headerText(received, 'subject'),
      messageId: headerText(received, 'message-id'),
    });
    log.info(
      { ...where, quarantineId: held.id, reason: result.verdict.reason, duplicate: held.duplicate },
      held.duplicate ? 'message already held in quarantine (a retry)' : 'message held in quarantine',
    );
    return { id: held.id, reply: withText(replies.quarantined, `${replies.quarantined.text} as ${held.id}`) };
  } catch (err) {
    const errno = ((err as { cause?: NodeJS.ErrnoException }).cause ?? undefined)?.code;
    const dir = quarantine?.dir;
    if (isPostsealError(err, 'QUARANTINE_TOO_BIG') || isPostsealError(err, 'QUARANTINE_FULL')) {
      const fix = err.code === 'QUARANTINE_FULL' ? 'release or delete held messages, or raise quarantine.maxTotalBytes' : 'raise quarantine.maxMessageSizeBytes';
      log.error(
        { ...where, quarantineDir: dir, code: err.code, reason: result.verdict.reason },
        `cannot hold the message in quarantine: ${err.message}; it is refused (550 5.7.1) instead (${fix})`,
      );
    } else {
      log.error(
        { ...where, quarantineDir: dir, errno, code: isPostsealError(err) ? err.code : undefined, reason: (err as Error).message },
        `cannot hold the message in the quarantine folder ${dir} (${errno ?? (err as Error).message}); it stays in the Postfix queue: check that the folder exists, is writable by postseal and has free space`,
      );
    }
    throw err;
  }
}
