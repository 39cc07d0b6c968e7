/**
 * A delivery status notification for a message postseal bounces by policy (destiny `bounce`):
 * RFC 3464 in an RFC 6522 multipart/report, written as Postfix's own bounces are, with the
 * original header section only (text/rfc822-headers, whatever RET asked: a policy bounce must
 * not return the content that caused it, a virus or spam, to an address that may be forged).
 *
 * - part 1, text/plain: what happened, in English, per recipient;
 * - part 2, message/delivery-status: Reporting-MTA, Original-Envelope-Id (the ENVID as Postfix
 *   wrote it, xtext), Arrival-Date; per recipient Final-Recipient, Original-Recipient (the
 *   ORCPT, xtext decoded, RFC 3461 4.2), Action: failed, Status and Diagnostic-Code from the
 *   verdict's reply;
 * - part 3, text/rfc822-headers: the header fields exactly as received.
 *
 * Header bytes outside ASCII in the original make the report 8-bit (`eightBit`: send it with
 * BODY=8BITMIME). Addresses outside ASCII are written as `utf-8;` types (RFC 6533).
 */
import { randomBytes } from 'node:crypto';
import { decodeXtext } from '../lib/envelope/xtext';
import type { SmtpReply } from '../smtp/replies';
import type { Recipient } from '../transaction/transaction';

export interface DsnInput {
  /** Our host name: Reporting-MTA and the Message-ID's right side. */
  readonly hostname: string;
  /** MAILER-DAEMON's domain (the From): main config notify.from's, so our key signs it; the hostname without it. */
  readonly fromDomain?: string;
  /** The envelope sender the notice goes to. */
  readonly sender: string;
  /** The recipients the notice is about (those that did not ask NOTIFY=NEVER). */
  readonly recipients: readonly Recipient[];
  readonly envid?: string;
  /** The verdict's refusal: its enhanced code is the Status, the whole reply the Diagnostic-Code. */
  readonly reply: SmtpReply;
  /** The finding that decided, for the text part. */
  readonly reason: string;
  readonly queueId?: string;
  readonly arrivedAt: Date;
  readonly now: Date;
  /** The original header fields as received (no separator line). */
  readonly header: Buffer;
}

const CRLF = '\r\n';

/** RFC 5322 date-time, as Postfix writes it, in UTC. */
function rfc5322Date(d: Date): string {
  return d.toUTCString().replace(/GMT$/, '+0000');
}

const ascii = (s: string) => /^[\x20-\x7e]*$/.test(s);

/** The address type and address of Final-/Original-Recipient (RFC 3464 2.3.2, RFC 6533 3). */
function typed(address: string): string {
  return ascii(address) ? `rfc822; ${address}` : `utf-8; ${address}`;
}

/** The ORCPT as "type; address" with its xtext decoded; undefined if it cannot be read. */
function originalRecipient(orcpt: string | undefined): string | undefined {
  if (orcpt === undefined) return undefined;
  const semi = orcpt.indexOf(';');
  if (semi < 1) return undefined;
  const decoded = decodeXtext(orcpt.slice(semi + 1));
  // A decoded address with control characters would end the field: left out, never written raw.
  return decoded === null || /[\x00-\x1f\x7f]/.test(decoded) ? undefined : `${orcpt.slice(0, semi)}; ${decoded}`;
}

export function buildDsn(input: DsnInput): { raw: Buffer; eightBit: boolean; messageId: string } {
  // RFC 2046 5.1.1: a boundary is at most 70 characters; a long host name is cut.
  const boundary = `${input.now.getTime()}/${randomBytes(8).toString('hex')}/${input.hostname}`.slice(0, 70);
  const messageId = `${input.now.getTime()}.${randomBytes(8).toString('hex')}@${input.hostname}`;
  const status = input.reply.enhanced;
  const diagnostic = `${input.reply.code} ${input.reply.enhanced} ${input.reply.text}`;
  const headerPart = input.header.length && input.header.at(-1) !== 0x0a ? Buffer.concat([input.header, Buffer.from(CRLF)]) : input.header;
  const eightBit = headerPart.some((b) => b > 0x7f) || !input.recipients.every((r) => ascii(r.address)) || !ascii(input.sender);
  const header = [
    `From: Mail Delivery System <MAILER-DAEMON@${input.fromDomain || input.hostname}>`,
    `To: <${input.sender}>`,
    'Subject: Undelivered Mail Returned to Sender',
    `Date: ${rfc5322Date(input.now)}`,
    `Message-ID: <${messageId}>`,
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status;${CRLF}\tboundary="${boundary}"`,
    `Content-Transfer-Encoding: ${eightBit ? '8bit' : '7bit'}`,
  ];
  const text = [
    `This is the mail system at host ${input.hostname}.`,
    '',
    "I'm sorry to have to inform you that your message could not",
    'be delivered to one or more recipients: it was refused by the',
    `content policy of this site (${input.reason}).`,
    '',
    'The header of your message is attached; its content was not kept.',
    '',
    ...input.recipients.map((r) => `<${r.address}>: ${diagnostic}`),
  ];
  const perMessage = [
    `Reporting-MTA: dns; ${input.hostname}`,
    ...(input.queueId ? [`X-Postfix-Queue-ID: ${input.queueId}`] : []),
    ...(input.envid !== undefined ? [`Original-Envelope-Id: ${input.envid}`] : []),
    `Arrival-Date: ${rfc5322Date(input.arrivedAt)}`,
  ];
  const perRecipient = input.recipients.map((r) => {
    const orig = originalRecipient(r.orcpt);
    return [
      `Final-Recipient: ${typed(r.address)}`,
      ...(orig ? [`Original-Recipient: ${orig}`] : []),
      'Action: failed',
      `Status: ${status}`,
      `Diagnostic-Code: smtp; ${diagnostic}`,
    ].join(CRLF);
  });
  const raw = Buffer.concat([
    Buffer.from(
      [
        ...header,
        '',
        'This is a MIME-encapsulated message.',
        '',
        `--${boundary}`,
        'Content-Description: Notification',
        'Content-Type: text/plain; charset=us-ascii',
        '',
        ...text,
        '',
        `--${boundary}`,
        'Content-Description: Delivery report',
        'Content-Type: message/delivery-status',
        '',
        [perMessage.join(CRLF), ...perRecipient].join(`${CRLF}${CRLF}`),
        '',
        `--${boundary}`,
        'Content-Description: Undelivered Message Headers',
        'Content-Type: text/rfc822-headers',
        `Content-Transfer-Encoding: ${eightBit ? '8bit' : '7bit'}`,
        '',
        '',
      ].join(CRLF),
      'utf8',
    ),
    headerPart,
    Buffer.from(`${CRLF}--${boundary}--${CRLF}`),
  ]);
  return { raw, eightBit, messageId };
}
