/**
 * The notices about a message a content check blocked (docs/notifications.md), amavisd-new's
 * admin, recipient and sender notifications, for the category of the deciding rule
 * (Verdict.category) and the bank's `notices` section:
 *
 * - admin: one notice to the category's addresses (virusAdmin, bannedAdmin, spamAdmin,
 *   badHeaderAdmin), from notify.from;
 * - recipient (warnVirusRecipient, warnBannedRecipient; never on an originating bank, whose
 *   recipients are not ours): one notice to every envelope recipient, To undisclosed;
 * - sender (warnBannedSender, warnBadHeaderSender): from <> to the envelope sender, only when
 *   it is not forged (authenticSender: SPF pass for its domain, or DMARC pass for an aligned
 *   From), never for spam or viruses, never for a bounce (the DSN tells), never to <>, never
 *   about list or bulk mail (List-*, Precedence: bulk/list/junk; RFC 3834 2).
 *
 * Only for blocked mail (reject, discard, quarantine, bounce); delivered mail gets none. Each
 * is rendered from its template (templates.ts), DKIM-signed (sign.ts; unsigned without a key,
 * said in the log line), counted against notify.maxNoticesPerHour (and the sender's domain
 * limit) and handed to the bank's notify target; each is logged with the session and queue id.
 *
 * A notice sent is remembered in the store by the message's retry-stable id and the audience
 * (NOTICE_MEMORY_MS), so a Postfix retry sends only the notices not sent yet.
 * Fails with NOTIFY_FAILED (the caller's 451, Postfix retries) when the notify target is
 * unreachable, slow or answers 4xx, or signing fails. A 5xx for a notice is logged and the
 * message goes its way (a refused admin address must not hold mail forever).
 */
import { getDomain } from 'tldts';
import { PostsealError } from '../errors';
import { DMARC_RESULT, SPF_RESULT } from '../lib/authentication-results';
import type { Results } from '../lib/results';
import type { PipelineResult } from '../pipeline/runner';
import type { NoticeCategory } from '../pipeline/stage';
import type { SmtpReply } from '../smtp/replies';
import { Message } from '../transaction/message';
import type { Transaction } from '../transaction/transaction';
import type { BounceDeps } from './bounce';
import { buildNotice } from './notice';
import { countSent, domainOf, overLimit } from './rate';
import { poolSender } from './send';
import { addressList, render, type Audience, type TemplateValues } from '../lib/notice-templates';

export const NOTICE_MEMORY_MS = 7 * 86400_000;
const KEY = 'notice-sent:';

export interface NoticeRequest {
  readonly tx: Transaction;
  /** The message as received: its Subject, From and Message-ID go into the notice. */
  readonly received: Message;
  readonly result: PipelineResult;
  /** retryStableId of the message (the quarantine id for a held one); asked only when a notice is due (it reads the whole message). */
  readonly stableId: () => Promise<string>;
  readonly quarantineId?: string;
  /** For a bounce: the reply that says whether the DSN went (or why not: the null sender, the rate limit). */
  readonly bounceReply?: SmtpReply;
  /** authenticSender as decided when the message was first settled (a retry has no check results). */
  readonly senderAuthentic?: boolean;
}

interface Planned {
  readonly audience: Audience;
  readonly to: readonly string[];
  readonly mailFrom: string;
}

const ADMIN: Record<NoticeCategory, 'virusAdmin' | 'bannedAdmin' | 'spamAdmin' | 'badHeaderAdmin'> = {
  virus: 'virusAdmin',
  banned: 'bannedAdmin',
  spam: 'spamAdmin',
  'bad-header': 'badHeaderAdmin',
};

/** The address notices come from: notify.from, or postmaster at our host name. */
export function noticeFrom(deps: Pick<BounceDeps, 'from' | 'hostname'>): string {
  return deps.from || `postmaster@${deps.hostname}`;
}

/**
 * The envelope sender is not forged: SPF passed for its own domain, or DMARC passed for a From
 * domain in the same organizational domain as it (relaxed alignment, RFC 7489 3.1).
 */
export function authenticSender(results: Results, sender: string): boolean {
  const domain = domainOf(sender);
  if (!domain) return false;
  const spf = results.get(SPF_RESULT);
  if (spf?.result === 'pass' && spf.domain.toLowerCase() === domain) return true;
  const dmarc = results.get(DMARC_RESULT);
  if (dmarc?.result !== 'pass' || !dmarc.from) return false;
  const org = (d: string) => getDomain(d, { allowPrivateDomains: true }) ?? d;
  return org(dmarc.from.toLowerCase()) === org(domain);
}

const NULL_SENDER = 'the message is from MAILER-DAEMON or the null sender';

/**
 * Why no notice or DSN may be written about this message, or undefined: it is itself
 * automatic (Auto-Submitted other than "no", RFC 3834 2), from our own notify.from, or from
 * MAILER-DAEMON or the null sender. Writing about such mail is how two systems loop.
 */
export function loopReason(deps: Pick<BounceDeps, 'from' | 'hostname'>, tx: Transaction, received: Message): string | undefined {
  const sender = tx.envelope.mailFrom.toLowerCase();
  const auto = received.get('auto-submitted').map((f) => Message.value(f).trim().toLowerCase());
  if (auto.some((v) => !/^no\b/.test(v))) return 'the message is Auto-Submitted';
  if (sender === '' || /^mailer-daemon@/.test(sender)) return NULL_SENDER;
  if (sender === noticeFrom(deps).toLowerCase()) return 'the message is from notify.from';
  return undefined;
}

/**
 * Why the message is list or bulk mail, or undefined: a List-* field (RFC 2369, RFC 2919) or
 * Precedence bulk, list or junk. RFC 3834 2: no automatic response to such mail. Its envelope
 * sender is a list's bounce handler, which would count our notice as a bounce of the list member.
 */
export function bulkReason(received: Message): string | undefined {
  const list = received.fields.find((f) => f.key.startsWith('list-'));
  if (list) return `the message is from a mailing list (${list.name})`;
  const precedence = received.get('precedence').map((f) => Message.value(f).trim().toLowerCase());
  const bulk = precedence.find((v) => /^(bulk|list|junk)\b/.test(v));
  return bulk ? `the message is bulk mail (Precedence: ${bulk.split(/\s/)[0]})` : undefined;
}

function plan(deps: BounceDeps, req: NoticeRequest, category: NoticeCategory): Planned[] {
  const { tx, result } = req;
  const n = tx.bank.notices;
  const from = noticeFrom(deps);
  const out: Planned[] = [];
  const admins = n[ADMIN[category]];
  if (admins.length) out.push({ audience: 'admin', to: admins, mailFrom: from });
  const warnRecipient = (category === 'virus' && n.warnVirusRecipient) || (category === 'banned' && n.warnBannedRecipient);
  if (warnRecipient && !tx.bank.originating) out.push({ audience: 'recipient', to: tx.envelope.recipients.map((r) => r.address), mailFrom: from });
  const warnSender = (category === 'banned' && n.warnBannedSender) || (category === 'bad-header' && n.warnBadHeaderSender);
  const sender = tx.envelope.mailFrom;
  const bulk = warnSender ? bulkReason(req.received) : undefined;
  if (warnSender && bulk) deps.log.info({ session: tx.id, queueId: tx.queueId, category, sender }, `no sender notice: ${bulk} (RFC 3834)`);
  else if (warnSender && result.verdict.action !== 'bounce' && sender !== '') {
    if (req.senderAuthentic ?? authenticSender(result.results, sender)) out.push({ audience: 'sender', to: [sender], mailFrom: '' });
    else
      deps.log.info(
        { session: tx.id, queueId: tx.queueId, category, sender },
        'no sender notice: the sender is not authenticated (no SPF pass for its domain, no aligned DMARC pass)',
      );
  }
  return out;
}

function headerText(m: Message, name: string): string {
  const f = m.get(name)[0];
  return f ? Message.value(f) : '';
}

function actionText(req: NoticeRequest): string {
  const v = req.result.verdict;
  switch (v.action) {
    case 'quarantine':
      return `held in quarantine as ${req.quarantineId}`;
    case 'bounce':
      return `not delivered (bounce): ${(req.bounceReply?.text ?? 'delivery status notification sent').replace(/^Ok, /, '')}`;
    case 'discard':
      return 'not delivered (discarded)';
    default:
      return `refused with ${v.reply.code} ${v.reply.enhanced} ${v.reply.text}`;
  }
}

function valuesOf(deps: BounceDeps, req: NoticeRequest, category: NoticeCategory, now: Date): TemplateValues {
  const { tx, received, result } = req;
  const deciding = result.findings.find((f) => f.code === result.verdict.reason);
  return {
    id: tx.id,
    queueId: tx.queueId ?? '-',
    sender: tx.envelope.mailFrom || '<>',
    recipients: addressList(tx.envelope.recipients.map((r) => r.address)),
    from: headerText(received, 'from'),
    subject: headerText(received, 'subject'),
    messageId: headerText(received, 'message-id'),
    reason: deciding?.detail ? `${result.verdict.reason} (${deciding.detail})` : result.verdict.reason,
    action: actionText(req),
    quarantineId: req.quarantineId ?? '-',
    category,
    hostname: deps.hostname,
    client: `${tx.client.name ?? 'unknown'} [${tx.client.addr ?? tx.peerAddress}]`,
    date: now.toUTCString(),
  };
}

/** Sends the notices the bank asks for about this blocked message; throws NOTIFY_FAILED for a 451. */
export async function sendNotices(deps: BounceDeps, req: NoticeRequest): Promise<void> {
  const category = req.result.verdict.category;
  if (!category || !deps.templates) return;
  const { tx } = req;
  const where = { session: tx.id, queueId: tx.queueId, category, reason: req.result.verdict.reason };
  const loop = loopReason(deps, tx, req.received);
  // A bounce is answered by no one, but the site's own admins still hear of the virus in it:
  // their notice goes to us, carries Auto-Submitted, and is never itself written about.
  if (loop && loop !== NULL_SENDER) {
    deps.log.info(where, `no notices: ${loop} (loop protection)`);
    return;
  }
  const planned = plan(deps, req, category).filter((p) => !loop || p.audience === 'admin');
  if (loop) deps.log.info(where, `admin notices only: ${loop} (loop protection)`);
  const stableId = planned.length ? await req.stableId() : '';
  for (const p of planned) {
    const key = `${KEY}${stableId}:${p.audience}`;
    const sent = await deps.store.get(key).catch((err) => {
      deps.log.warn({ ...where, err }, 'cannot ask the store whether this notice was sent before; sending it');
      return undefined;
    });
    if (sent !== undefined) {
      deps.log.info({ ...where, audience: p.audience, notice: sent }, 'notice was sent before (a retry); not sent again');
      continue;
    }
    const over = deps.limits && (await overLimit(deps.store, deps.limits, `notice:${p.audience}`, p.audience === 'sender' ? domainOf(p.to[0]) : undefined, deps.log));
    if (over) {
      deps.log.warn({ ...where, audience: p.audience, to: p.to, limit: over }, `notice not sent: over ${over}`);
      continue;
    }
    const now = deps.now?.() ?? new Date();
    const template = deps.templates.get(`${p.audience}:${category}`)!;
    const text = render(template, valuesOf(deps, req, category, now));
    const notice = buildNotice({
      from: noticeFrom(deps),
      to: p.audience === 'recipient' ? [] : p.to,
      subject: text.subject,
      body: text.body,
      audience: p.audience,
      category,
      hostname: deps.hostname,
      now,
    });
    let raw = notice.raw;
    if (deps.sign) {
      try {
        raw = await deps.sign(raw);
      } catch (err) {
        throw failed(deps, where, `DKIM signing failed: ${(err as Error).message}`, err);
      }
    }
    const r = await poolSender(deps.pool)(p.mailFrom, p.to, raw);
    if (!r.ok && !r.permanent) throw failed(deps, where, r.reason, undefined);
    if (!r.ok) {
      deps.log.error({ ...where, audience: p.audience, to: p.to, reason: r.reason }, 'the notify target refused the notice for good; the message goes on without it');
      continue;
    }
    if (deps.limits) await countSent(deps.store, `notice:${p.audience}`, p.audience === 'sender' ? domainOf(p.to[0]) : undefined, deps.log);
    await deps.store
      .set(key, notice.messageId, { ttlMs: NOTICE_MEMORY_MS })
      .catch((err) => deps.log.warn({ ...where, err }, 'notice sent but not recorded: a retry of this message would send it again'));
    deps.log.info(
      {
        ...where,
        audience: p.audience,
        to: r.accepted,
        notice: notice.messageId,
        template: template.file,
        dkim: deps.sign ? 'signed' : `unsigned (no signing key for ${domainOf(noticeFrom(deps))})`,
      },
      `${p.audience} notice sent`,
    );
  }
}

function failed(deps: BounceDeps, where: object, why: string, cause: unknown): PostsealError {
  deps.log.error(
    { ...where, notify: `${deps.pool.target.host}:${deps.pool.target.port}`, reason: why },
    `cannot send a notice through the notify target (${why}); the message stays in the Postfix queue`,
  );
  return new PostsealError('NOTIFY_FAILED', `notice not sent: ${why}`, { cause });
}
