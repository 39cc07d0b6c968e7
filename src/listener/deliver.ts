/**
 * End of DATA: spool the message, run the bank's pipeline, act on the verdict, send the
 * message downstream and turn the downstream's answer into the upstream's reply. Writes
 * the one structured log line per message (STYLE.md §12) and removes the spool files.
 *
 * Replies: 552 5.3.4 too big; 451 4.3.0 client gone, spool not writable (logged with its
 * folder and errno) or internal error; the verdict's reply
 * for reject/tempfail; 250 2.7.0 for a message held in quarantine (quarantine/hold.ts; 451
 * 4.3.0 if it cannot be held) and for one bounced once its DSN was accepted (notify/bounce.ts;
 * 451 4.3.0 if the notify target failed), each after the bank's notices (listener/blocked.ts,
 * 451 4.3.0 if one could not be sent); 451 4.4.7 when timeouts.messageDeadlineMs passes; otherwise the
 * downstream's own reply (one per recipient on LMTP).
 * Reports the message, its in-flight span and downstream failures at DATA to ctx.telemetry.
 */
import { receivedTransaction } from './received';
import type { Readable } from 'node:stream';
import type { SMTPServerDataResult } from 'smtp-server';
import type { ListenerConfig } from '../config/main-schema';
import { PostsealError } from '../errors';
import type { PipelineResult } from '../pipeline/runner';
import { delivers } from '../pipeline/verdict';
import type { DownstreamTransaction } from '../reinject/downstream-transaction';
import { mirrorReply } from '../reinject/reply-map';
import { replyForError } from '../smtp/error-replies';
import type { DataReplies } from '../reinject/smtp-client';
import { errorFields } from '../lib/log';
import { countDownstreamFailure, noTelemetry, type MessageReport } from '../lib/telemetry';
import { formatReply, replyError, type SmtpReply } from '../smtp/replies';
import { settleBlocked, settleEarlier, stableIdOf } from './blocked';
import { finishMessage, logSpoolFailure, recordResult } from './message-record';
import { spoolFrom, type Spool } from '../transaction/spool';
import type { ClientInfo, Envelope } from '../transaction/transaction';
import type { SessionContext } from './session';

export interface DeliverInput {
  stream: Readable;
  down: DownstreamTransaction;
  envelope: Envelope;
  client: ClientInfo;
  peer: string;
  id: string;
  listener: ListenerConfig;
  /** The bank the transaction runs on, and the rule that chose it (config/bank-rules.ts). */
  bankName: string;
  bankRule: string;
  /** The session's TLS protocol (TLSv1.3 ...) after STARTTLS; null in plain text. */
  tls: string | null;
  ctx: SessionContext;
  /** Aborted when the upstream client disconnects. */
  upstream: AbortSignal;
}

export async function deliver(input: DeliverInput): Promise<string | SMTPServerDataResult[]> {
  const { down, ctx } = input;
  const bank = ctx.bank;
  const started = performance.now();
  const telemetry = ctx.telemetry ?? noTelemetry;
  telemetry.inFlight(1);
  let result: PipelineResult | undefined;
  // The metrics' message latency starts at the end of the data, as Postfix's wait for our reply does.
  let spooledAt: number | undefined;
  let replyClass: MessageReport['replyClass'] = '4';
  const spools: Spool[] = [];
  const record: Record<string, unknown> = {
    session: input.id,
    queueId: input.client.ident,
    port: input.listener.port,
    bankRule: input.bankRule,
    tls: input.tls ?? 'none',
    downstreamTls: down.tls,
    from: input.envelope.mailFrom,
    rcpts: input.envelope.recipients.length,
    client: input.client.addr,
  };
  let replyText = '';
  // Not AbortSignal.timeout: its timer cannot be cleared, so every message left one running
  // for the whole deadline (8 minutes by default), with a weakly held signal and a
  // finalization entry that only a full garbage collection clears.
  const deadline = new AbortController();
  let deadlineTimer: NodeJS.Timeout | undefined;
  try {
    const spool = await spoolFrom(input.stream, { ...ctx.spool, maxSizeBytes: bank.maxMessageSizeBytes });
    spools.push(spool);
    spooledAt = performance.now();
    record.size = spool.size;
    const tx = receivedTransaction(input, bank, spool);
    deadlineTimer = setTimeout(() => deadline.abort(new PostsealError('DEADLINE_EXCEEDED', 'message deadline passed')), bank.timeouts.messageDeadlineMs);
    const received = tx.message;
    // A Postfix retry of a message held, bounced or refused before keeps that outcome (listener/blocked.ts).
    const blockedDeps = { quarantine: ctx.quarantine, notify: ctx.bounce, log: ctx.log };
    const stableId = ctx.quarantine || ctx.bounce ? await stableIdOf(tx, received) : undefined;
    const earlier = stableId === undefined ? undefined : await settleEarlier(blockedDeps, { tx, received, stableId });
    if (earlier) {
      down.abort();
      Object.assign(record, { verdict: 'earlier', quarantineId: earlier.kind === 'accepted' ? earlier.quarantineId : undefined });
      if (earlier.kind === 'refused') throw replyError(earlier.reply);
      replyClass = '2';
      return (replyText = ok(earlier.reply));
    }
    result = await ctx.pipeline.run(tx, deadline.signal);
    spools.push(...result.spools);
    recordResult(record, result);
    // pass and tag are delivered (with their fields already on the message); the rest are not.
    if (!delivers(result.verdict.action)) {
      down.abort();
      // Held, bounced, discarded or refused, with the bank's notices (listener/blocked.ts).
      const blocked = await settleBlocked(blockedDeps, { tx, received, result, stableId });
      if (blocked.kind === 'refused') throw replyError(blocked.reply);
      if (blocked.quarantineId) record.quarantineId = blocked.quarantineId;
      replyClass = '2';
      return (replyText = ok(blocked.reply));
    }
    // A client gone after its final dot would retry a message we had delivered: not sent on.
    if (input.upstream.aborted) throw new PostsealError('UPSTREAM_ABORTED', 'the client disconnected before the message went downstream');
    const downReplies = await whileConnected(withDeadline(down.data(tx.message.openRaw()), deadline.signal, down), input.upstream, down);
    if (downReplies.failure) countDownstreamFailure(ctx.telemetry, downReplies.failure, 'DATA');
    const upstream = upstreamResult(downReplies, input.listener.protocol === 'lmtp', input.envelope.recipients.length);
    replyClass = classOf(upstream);
    replyText = typeof upstream === 'string' ? upstream : upstream.map((r) => (typeof r === 'string' ? r : r.message)).join(' | ');
    return upstream;
  } catch (err) {
    down.abort();
    const own = (err as { reply?: SmtpReply }).reply;
    const reply = own ?? replyForError(err);
    replyText = formatReply(reply);
    replyClass = reply.code[0] === '5' ? '5' : '4';
    countDownstreamFailure(ctx.telemetry, err, 'DATA');
    if (!own) Object.assign(record, errorFields(err));
    logSpoolFailure(ctx, err, { session: input.id, queueId: input.client.ident });
    throw own ? err : replyError(reply);
  } finally {
    clearTimeout(deadlineTimer);
    await finishMessage(ctx, telemetry, { record, spools, bankName: input.bankName, result, replyText, replyClass, started, measuredFrom: spooledAt ?? started });
  }
}

/** The reply class the upstream got; on LMTP the first recipient's. */
function classOf(upstream: string | SMTPServerDataResult[]): MessageReport['replyClass'] {
  if (typeof upstream === 'string') return '2';
  const first = upstream[0];
  if (first === undefined || typeof first === 'string') return '2';
  const code = String((first as { responseCode?: number }).responseCode ?? 451);
  return code[0] === '5' ? '5' : code[0] === '2' ? '2' : '4';
}

function ok(reply: SmtpReply): string {
  return `${reply.enhanced} ${reply.text}`;
}

/**
 * The downstream's end-of-data replies as smtp-server wants them: text, or one entry per
 * recipient. LMTP recipients whose reply never came (the server went away after answering
 * some) get the failure's 4xx; those already answered keep their reply, so Postfix retries
 * only them and nobody gets the message twice.
 */
function upstreamResult(down: DataReplies, lmtp: boolean, recipients: number): string | SMTPServerDataResult[] {
  const mapped = down.replies.map(mirrorReply);
  const asResult = (r: SmtpReply) => (r.code[0] === '2' ? ok(r) : replyError(r));
  if (lmtp) {
    if (mapped.length === 1 && !down.failure) return Array.from({ length: recipients }, () => asResult(mapped[0]));
    const missing = replyForError(down.failure ?? new PostsealError('REINJECT_PROTOCOL', 'downstream sent fewer replies than recipients'));
    return Array.from({ length: recipients }, (_, i) => asResult(mapped[i] ?? missing));
  }
  const r = mapped[0];
  if (r.code[0] !== '2') throw replyError(r);
  return ok(r);
}

/** Drops the downstream connection when the upstream goes away before the final dot was answered. */
async function whileConnected<T>(work: Promise<T>, upstream: AbortSignal, down: DownstreamTransaction): Promise<T> {
  const onGone = () => down.cancel();
  upstream.addEventListener('abort', onGone, { once: true });
  try {
    return await work;
  } finally {
    upstream.removeEventListener('abort', onGone);
  }
}

async function withDeadline<T>(work: Promise<T>, deadline: AbortSignal, down: DownstreamTransaction): Promise<T> {
  if (deadline.aborted) throw new PostsealError('DEADLINE_EXCEEDED', 'message deadline passed before reinjection');
  let onAbort: () => void = () => undefined;
  const expired = new Promise<never>((_, reject) => {
    onAbort = () => {
      down.cancel();
      reject(new PostsealError('DEADLINE_EXCEEDED', 'message deadline passed during reinjection'));
    };
    deadline.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([work, expired]);
  } finally {
    deadline.removeEventListener('abort', onAbort);
  }
}
