/**
 * The one table from error code to reply (STYLE.md §4, §11): every path that ends a command
 * or a message because of an error (the listener, the pipeline, the reinjection) answers
 * with replyForError, so one code always gets the same reply. Errors whose text helps the
 * postmaster (a downstream that refused, timed out or broke the protocol) carry it in the
 * reply; everything else is answered with the table's text alone and logged in full.
 *
 * Configuration errors never reach a client: they stop start-up or refuse a reload.
 */
import { isPostsealError, type ErrorCode } from '../errors';
import { replies, withText, type ReplyReason, type SmtpReply } from './replies';

const table: Partial<Record<ErrorCode, ReplyReason>> = {
  MESSAGE_TOO_BIG: 'messageTooBig',
  HEADER_TOO_BIG: 'headerTooBig',
  MILTER_TOO_MANY_EDITS: 'headerTooManyEdits',
  UPSTREAM_ABORTED: 'upstreamAborted',
  SPOOL_FAILED: 'spoolFailed',
  SPOOL_FULL: 'spoolFull',
  QUARANTINE_FAILED: 'quarantineFailed',
  QUARANTINE_TOO_BIG: 'quarantineFailed',
  NOTIFY_FAILED: 'notifyFailed',
  STAGE_FAILED: 'internalError',
  STAGE_TIMEOUT: 'stageTimeout',
  DEADLINE_EXCEEDED: 'deadlineExceeded',
  REINJECT_REFUSED: 'reinjectRefused',
  REINJECT_TIMEOUT: 'reinjectTimeout',
  REINJECT_PROTOCOL: 'reinjectFailed',
  REINJECT_TLS: 'reinjectTls',
};

/** Codes whose message is worth putting into the reply text. */
const withDetail = new Set<ErrorCode>(['REINJECT_REFUSED', 'REINJECT_TIMEOUT', 'REINJECT_PROTOCOL', 'REINJECT_TLS']);

/** The reply for an error; anything without an entry (a bug) is 451 4.3.0, so Postfix keeps the mail. */
export function replyForError(err: unknown): SmtpReply {
  if (!isPostsealError(err)) return replies.internalError;
  const reply = replies[table[err.code] ?? 'internalError'];
  return withDetail.has(err.code) ? withText(reply, `${reply.text}: ${err.message}`) : reply;
}
