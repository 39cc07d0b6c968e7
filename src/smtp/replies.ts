/**
 * Every reply postseal writes itself, from one table: reason -> code, enhanced status code
 * (RFC 3463), text. A reply that mirrors the downstream keeps the downstream's code and
 * text instead (see reinject/reply-map.ts).
 *
 * The listener hides smtp-server's own enhanced-code mapping (it would call a content
 * reject 5.1.1), so the enhanced code written here is the one the client sees.
 */

type Digit = '0' | '1' | '2' | '3' | '4' | '5' | '6' | '7' | '8' | '9';
type Class = '2' | '4' | '5';
/** The template type makes the class digit of the code and of the enhanced code agree. */
type Reply<C extends Class> = { code: `${C}${Digit}${Digit}`; enhanced: `${C}.${string}`; text: string };
export type SmtpReply = Reply<'2'> | Reply<'4'> | Reply<'5'>;

export const replies = {
  accepted: { code: '250', enhanced: '2.0.0', text: 'Ok' },
  discarded: { code: '250', enhanced: '2.7.0', text: 'Ok, discarded by policy' },
  quarantined: { code: '250', enhanced: '2.7.0', text: 'Ok, held in quarantine' },
  bounced: { code: '250', enhanced: '2.7.0', text: 'Ok, rejected by policy, delivery status notification sent' },
  contentRejected: { code: '550', enhanced: '5.7.1', text: 'Message content rejected' },
  dmarcRejected: { code: '550', enhanced: '5.7.1', text: 'Rejected by DMARC policy' },
  dmarcTempfail: { code: '451', enhanced: '4.7.0', text: 'DMARC check could not complete, try again later' },
  bannedRejected: { code: '554', enhanced: '5.7.0', text: 'Message content rejected: banned content' },
  headerRejected: { code: '550', enhanced: '5.6.0', text: 'Message header malformed' },
  spamRejected: { code: '554', enhanced: '5.7.0', text: 'Message rejected as spam' },
  spamScannerFailed: { code: '451', enhanced: '4.3.0', text: 'Spam check could not complete, try again later' },
  spamSoftReject: { code: '451', enhanced: '4.7.1', text: 'Message deferred by the spam scanner, try again later' },
  // The virus stage (stages/virus): a virus name from clamd may follow the text, printable ASCII only.
  virusRejected: { code: '554', enhanced: '5.7.0', text: 'Message rejected: virus found' },
  virusScanFailed: { code: '451', enhanced: '4.3.0', text: 'Virus scan could not complete, try again later' },
  bannedBusy: { code: '451', enhanced: '4.3.1', text: 'Content filter busy, try again later' },
  virusScanTooBig: { code: '451', enhanced: '4.3.4', text: 'Message too big for the virus scanner, try again later' },
  virusScanTooBigRefused: { code: '552', enhanced: '5.3.4', text: 'Message too big for the virus scanner, not sent unscanned' },
  mailLoop: { code: '554', enhanced: '5.4.6', text: 'Mail loop detected' },
  messageTooBig: { code: '552', enhanced: '5.3.4', text: 'Message size exceeds fixed limit' },
  headerTooBig: { code: '552', enhanced: '5.3.4', text: 'Message header size exceeds limit' },
  headerTooManyEdits: { code: '550', enhanced: '5.6.0', text: 'Message header malformed: too many fields to remove or rewrite' },
  tooManyRecipients: { code: '452', enhanced: '4.5.3', text: 'Too many recipients' },
  senderAccepted: { code: '250', enhanced: '2.1.0', text: 'Ok' },
  recipientAccepted: { code: '250', enhanced: '2.1.5', text: 'Ok' },
  senderNotUnderstood: { code: '451', enhanced: '4.1.7', text: 'Sender address not understood by the content filter, try again later' },
  recipientNotUnderstood: { code: '451', enhanced: '4.1.3', text: 'Recipient address not understood by the content filter, try again later' },
  badParameter: { code: '501', enhanced: '5.5.4', text: 'Invalid parameter' },
  unsupportedParameter: { code: '555', enhanced: '5.5.4', text: 'Unsupported option' },
  needMail: { code: '503', enhanced: '5.5.1', text: 'Error: need MAIL command' },
  nestedMail: { code: '503', enhanced: '5.5.1', text: 'Error: nested MAIL command' },
  internalError: { code: '451', enhanced: '4.3.0', text: 'Local error in processing, try again later' },
  stageTimeout: { code: '451', enhanced: '4.3.0', text: 'Content check timed out, try again later' },
  deadlineExceeded: { code: '451', enhanced: '4.4.7', text: 'Message processing took too long, try again later' },
  reinjectFailed: { code: '451', enhanced: '4.4.0', text: 'Downstream delivery failed, try again later' },
  reinjectRefused: { code: '451', enhanced: '4.4.1', text: 'Downstream server not reachable, try again later' },
  reinjectTimeout: { code: '451', enhanced: '4.4.2', text: 'Downstream server timed out, try again later' },
  reinjectTls: { code: '451', enhanced: '4.7.5', text: 'Downstream TLS failed, try again later' },
  tooManyConnections: { code: '421', enhanced: '4.3.2', text: 'Too many connections, try again later' },
  shuttingDown: { code: '421', enhanced: '4.3.2', text: 'Shutting down, try again later' },
  upstreamAborted: { code: '451', enhanced: '4.3.0', text: 'Message data incomplete' },
  spoolFailed: { code: '451', enhanced: '4.3.0', text: 'Local error in processing: cannot write the message to the spool, try again later' },
  // RFC 3463 X.3.1 "mail system full", as Postfix's own smtpd answers when its queue file system is full.
  spoolFull: { code: '452', enhanced: '4.3.1', text: 'Insufficient system storage, try again later' },
  quarantineFailed: { code: '451', enhanced: '4.3.0', text: 'Local error in processing: cannot hold the message in quarantine, try again later' },
  notifyFailed: { code: '451', enhanced: '4.3.0', text: 'Local error in processing: the delivery status notification could not be sent, try again later' },
  signingFailed: { code: '451', enhanced: '4.7.5', text: 'Message could not be signed, try again later' },
  conversionFailed: { code: '451', enhanced: '4.6.3', text: 'Message cannot be converted to 7 bit, try again later' },
  // The policy service (services/policy): Postfix writes them at RCPT, the code of the greylisting and
  // internal-error ones coming from its DEFER_IF_PERMIT (defer_code 450), the enhanced code and text from here.
  policySpfRejected: { code: '550', enhanced: '5.7.23', text: 'SPF validation failed' },
  policyGreylisted: { code: '450', enhanced: '4.7.1', text: 'Greylisted' },
  policySpfTempfail: { code: '451', enhanced: '4.4.3', text: 'SPF check could not complete (DNS error), try again later' },
  policyError: { code: '451', enhanced: '4.3.0', text: 'Policy service error, try again later' },
} as const satisfies Record<string, SmtpReply>;

export type ReplyReason = keyof typeof replies;

/** An Error that smtp-server writes as "<code> <enhanced> <text>". */
export interface SmtpReplyError extends Error {
  responseCode: number;
  reply: SmtpReply;
}

export function replyError(reply: SmtpReply, detail?: string): SmtpReplyError {
  const text = detail ? `${reply.text} (${detail})` : reply.text;
  const err = new Error(`${reply.enhanced} ${text}`) as SmtpReplyError;
  err.responseCode = Number(reply.code);
  err.reply = reply;
  return err;
}

export function formatReply(reply: SmtpReply): string {
  return `${reply.code} ${reply.enhanced} ${reply.text}`;
}

export function withText<R extends SmtpReply>(reply: R, text: string): R {
  return { ...reply, text };
}
