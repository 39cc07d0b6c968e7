/**
 * What the end of a message does with a bounce verdict (destiny `bounce`, amavisd D_BOUNCE),
 * for every front end that runs the pipeline (listener/deliver.ts, a milter): a DSN (dsn.ts)
 * from the null sender to the envelope sender, through the bank's `notify` target, and 250
 * to the upstream only once that target accepted the DSN's end of data. The message itself
 * is not delivered.
 *
 * No DSN, and the message is dropped with 250 2.7.0 and a log line, when the sender is the
 * null sender (a bounce of a bounce: RFC 5321 6.1, RFC 3461 6.2) or no recipient's NOTIFY
 * includes FAILURE (RFC 3461 4.1: NEVER, or only SUCCESS/DELAY), or, for banned files and
 * bad headers on a bank that is not originating, when the sender is not authenticated
 * (notices.ts authenticSender: no backscatter to forged senders), or when the message is
 * itself automatic (Auto-Submitted other than no, from MAILER-DAEMON or notify.from: loops), or when the hourly limits of main config notify (rate.ts: all DSNs, and DSNs
 * and sender notices per sender domain) are reached: then with a warning. A DSN already sent
 * for this very message (a Postfix retry after our reply was lost) is not sent again: the
 * store remembers it by the retry-stable id for DSN_MEMORY_MS.
 *
 * The DSN comes From MAILER-DAEMON at the domain of notify.from and is DKIM-signed by us
 * (sign.ts) with that domain's keys before it goes to the notify target (Postfix's 10027
 * smtpd comes after postseal's signing); without a key it goes unsigned, and the log line says so.
 *
 * Fails: the notify target unreachable, slow, or answering 4xx, or signing failing: NOTIFY_FAILED (451 4.3.0,
 * Postfix retries, no DSN recorded). It refusing the DSN for good (5xx): the message is held
 * in quarantine when the caller can (req.instead), else dropped, with an error log line (a 5xx upstream would make Postfix bounce it with its body,
 * the content the policy bounce keeps from the sender).
 */
import { PostsealError } from '../errors';
import type { Logger } from '../lib/log';
import type { PipelineResult } from '../pipeline/runner';
import { retryStableId } from '../transaction/retry-id';
import { DownstreamTransaction } from '../reinject/downstream-transaction';
import type { DownstreamPool } from '../reinject/pool';
import type { DownstreamReply } from '../reinject/smtp-client';
import { replies, withText, type SmtpReply } from '../smtp/replies';
import type { Store } from '../store/store';
import type { Message } from '../transaction/message';
import type { Transaction } from '../transaction/transaction';
import { buildDsn } from './dsn';
import { authenticSender, loopReason } from './notices';
import { countSent, domainOf, overLimit, type RateLimits } from './rate';
import type { SignReport } from './sign';
import type { Templates } from '../lib/notice-templates';

/** How long a sent DSN is remembered: longer than Postfix's maximal_queue_lifetime (5 days). */
export const DSN_MEMORY_MS = 7 * 86400_000;
export const DSN_SENT_KEY = 'dsn-sent:';
const KEY = DSN_SENT_KEY;

/** What DSNs and notices are sent with: the bank's notify target and the main config's notify section. */
export interface BounceDeps {
  /** Connections to the bank's notify target. */
  readonly pool: DownstreamPool;
  readonly store: Store;
  readonly hostname: string;
  readonly log: Logger;
  readonly now?: () => Date;
  /** notify.from (postmaster@hostname when empty): notices' From, and the DSN's MAILER-DAEMON domain. */
  readonly from?: string;
  /** DKIM signer for the domain of `from`; absent when the signing table has no key for it (sent unsigned, logged). */
  readonly sign?: SignReport;
  /** Hourly limits; none without them (tests of the sending alone). */
  readonly limits?: RateLimits;
  /** The notice templates (templates.ts); without them no notice is sent. */
  readonly templates?: Templates;
}

export interface BounceRequest {
  readonly tx: Transaction;
  /** The message as it arrived: its header goes into the DSN. */
  readonly received: Message;
  readonly result: PipelineResult;
  /** retryStableId of the message when the caller has it already (it reads the whole message). */
  readonly stableId?: string;
  /** What to do instead of dropping a message whose DSN is over the hourly limit or refused for good (hold it in quarantine); its reply. */
  readonly instead?: () => Promise<SmtpReply>;
}

const show = (r: DownstreamReply) => `${r.code}${r.enhanced ? ` ${r.enhanced}` : ''} ${r.text}`;
const isOk = (r: DownstreamReply) => r.code >= 200 && r.code < 300;

async function* once(raw: Buffer): AsyncIterable<Buffer> {
  yield raw;
}

/** The upstream's reply for a message bounced by policy; throws (a reply error or NOTIFY_FAILED) when it must not be 250. */
export async function bounceMessage(deps: BounceDeps, req: BounceRequest): Promise<SmtpReply> {
  const { tx, received, result } = req;
  const where = { session: tx.id, queueId: tx.queueId, reason: result.verdict.reason };
  const sender = tx.envelope.mailFrom;
  // RFC 3461 4.1: a failure DSN only for recipients without NOTIFY or whose NOTIFY has FAILURE.
  const recipients = tx.envelope.recipients.filter((r) => r.notify === undefined || /\bFAILURE\b/i.test(r.notify));
  if (sender === '' || recipients.length === 0) {
    const never = tx.envelope.recipients.every((r) => /\bNEVER\b/i.test(r.notify ?? ''));
    const why = sender === '' ? 'the null sender' : never ? 'NOTIFY=NEVER' : 'no NOTIFY=FAILURE';
    deps.log.info(where, `message bounced by policy: no DSN to ${why}, message dropped`);
    return withText(replies.bounced, `Ok, rejected by policy, no notification (${why})`);
  }
  const loop = loopReason(deps, tx, received);
  if (loop) {
    deps.log.info(where, `message bounced by policy: no DSN, ${loop} (loop protection); message dropped`);
    return withText(replies.bounced, 'Ok, rejected by policy, no notification (automatic message)');
  }
  // Banned files and bad headers are common in forged mail: on a bank that is not originating, a
  // DSN goes only to a sender that authenticated (as the sender notices), never as backscatter.
  const category = result.verdict.category;
  if ((category === 'banned' || category === 'bad-header') && !tx.bank.originating && !authenticSender(result.results, sender)) {
    deps.log.info({ ...where, category, sender }, 'message bounced by policy: no DSN, the sender is not authenticated (no backscatter); message dropped');
    return withText(replies.bounced, 'Ok, rejected by policy, no notification (sender not authenticated)');
  }
  const spool = received.spool;
  const key = KEY + (req.stableId ?? (await retryStableId({ queueId: tx.queueId, bank: tx.bankName, envelope: tx.envelope, client: tx.client, raw: () => spool.openRaw(0) })));
  const sent = await deps.store.get(key).catch((err) => {
    deps.log.warn({ ...where, err }, 'cannot ask the store whether this DSN was sent before; sending it');
    return undefined;
  });
  if (sent !== undefined) {
    deps.log.info({ ...where, dsn: sent }, 'message bounced by policy: its DSN was sent before (a retry)');
    return replies.bounced;
  }
  const over = deps.limits && (await overLimit(deps.store, deps.limits, 'dsn', domainOf(sender), deps.log));
  if (over) {
    if (req.instead) {
      deps.log.warn({ ...where, to: sender, limit: over }, `message bounced by policy: DSN not sent, over ${over}; message held in quarantine instead`);
      return req.instead();
    }
    deps.log.warn({ ...where, to: sender, limit: over }, `message bounced by policy: DSN not sent, over ${over}; message dropped`);
    return withText(replies.bounced, 'Ok, rejected by policy, no notification (DSN rate limit)');
  }
  const now = deps.now?.() ?? new Date();
  const refusal = result.verdict.reply.code[0] === '5' ? result.verdict.reply : replies.contentRejected;
  const dsn = buildDsn({
    hostname: deps.hostname,
    fromDomain: deps.from ? domainOf(deps.from) : undefined,
    sender,
    recipients,
    envid: tx.envelope.envid,
    reply: refusal,
    reason: result.verdict.reason,
    queueId: tx.queueId,
    arrivedAt: tx.receivedAt,
    now,
    header: Buffer.concat(received.fields.map((f) => f.raw)),
  });
  let raw = dsn.raw;
  if (deps.sign) {
    try {
      raw = await deps.sign(raw);
    } catch (err) {
      throw notifyFailed(deps, where, `DKIM signing failed: ${(err as Error).message}`, err);
    }
  }
  const utf8 = /[^\x00-\x7f]/.test(sender);
  let down: Awaited<ReturnType<typeof DownstreamTransaction.begin>>;
  try {
    down = await DownstreamTransaction.begin(deps.pool, { mailFrom: '', smtputf8: utf8, body: dsn.eightBit ? '8BITMIME' : undefined }, null);
  } catch (err) {
    throw notifyFailed(deps, where, (err as Error).message, err);
  }
  if (!down.tx) return refuse(deps, req, where, `MAIL FROM:<>: ${show(down.reply)}`, down.reply);
  const t = down.tx;
  const guarded = async <T>(step: () => Promise<T>): Promise<T> => {
    try {
      return await step();
    } catch (err) {
      t.cancel();
      throw notifyFailed(deps, where, (err as Error).message, err);
    }
  };
  const rcpt = await guarded(() => t.rcpt({ address: sender }));
  if (!isOk(rcpt)) {
    t.abort();
    return refuse(deps, req, where, `RCPT TO:<${sender}>: ${show(rcpt)}`, rcpt);
  }
  const final: DownstreamReply | undefined = await guarded(async () => {
    const done = await t.data(once(raw));
    if (done.failure) throw done.failure;
    return done.replies[0];
  });
  if (!final || !isOk(final)) return refuse(deps, req, where, `DATA: ${final ? show(final) : 'no reply'}`, final);
  if (deps.limits) await countSent(deps.store, 'dsn', domainOf(sender), deps.log);
  await deps.store
    .set(key, dsn.messageId, { ttlMs: DSN_MEMORY_MS })
    .catch((err) => deps.log.warn({ ...where, err }, 'DSN sent but not recorded: a retry of this message would send it again'));
  deps.log.info(
    {
      ...where,
      dsn: dsn.messageId,
      to: sender,
      notifyReply: show(final),
      dkim: deps.sign ? 'signed' : `unsigned (no signing key for ${deps.from ? domainOf(deps.from) : deps.hostname})`,
    },
    'message bounced by policy: DSN sent',
  );
  return replies.bounced;
}

function notifyFailed(deps: BounceDeps, where: object, why: string, cause: unknown): PostsealError {
  deps.log.error(
    { ...where, notify: `${deps.pool.target.host}:${deps.pool.target.port}`, reason: why },
    `cannot send the DSN through the notify target (${why}); the message stays in the Postfix queue`,
  );
  return new PostsealError('NOTIFY_FAILED', `DSN not sent: ${why}`, { cause });
}

/**
 * A 4xx from the notify target is a retry. A 5xx means the DSN will never go: the message is
 * held in quarantine (req.instead) or dropped, with an error log line. Not a 5xx upstream: Postfix would then bounce the message
 * with its body, the very content (a virus) the policy bounce keeps from the sender.
 */
async function refuse(deps: BounceDeps, req: BounceRequest, where: object, why: string, reply: DownstreamReply | undefined): Promise<SmtpReply> {
  if (!reply || reply.code < 500) throw notifyFailed(deps, where, why, undefined);
  if (req.instead) {
    deps.log.error({ ...where, reason: why }, 'the notify target refused the DSN for good; the message is held in quarantine instead');
    return req.instead();
  }
  deps.log.error({ ...where, reason: why }, 'the notify target refused the DSN for good; the message is dropped without a DSN');
  return withText(replies.bounced, 'Ok, rejected by policy, no notification (the DSN was refused)');
}
