/**
 * MAIL FROM and RCPT TO on postseal's listeners, read by lib/envelope/commands.ts instead of
 * smtp-server's parser, which decodes what must be passed on as written (that file's header
 * says what it broke: every user+tag recipient bounced through Postfix).
 *
 * How: smtp-server (3.21.6, pinned exactly; data-phase.ts checks the version at load) calls
 * SMTPConnection#handler_MAIL / handler_RCPT with the command line's bytes. Those two methods
 * are replaced here; on a server that `useEnvelopeCommands` was called for, the replacement
 * parses the line, asks postseal's session (which runs the same command downstream) and
 * writes the reply itself, with its enhanced status code. Other servers in the process (the
 * tests' sinks) keep the library's handlers. What the library's handlers keep in
 * `session.envelope` (mailFrom, rcptTo) is kept the same way, as its DATA and RSET read it.
 * Remove when smtp-server can hand over the raw command (none of its options does today).
 */
import type { SMTPServer, SMTPServerSession } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection';
import { parseMail, parseRcpt, type Announced, type MailCommand, type RcptCommand, type Refusal } from '../../lib/envelope/commands';
import { replies, type SmtpReply } from '../../smtp/replies';

export interface EnvelopeHandlers {
  readonly announced: Announced;
  /** Runs MAIL downstream; resolves with the reply for the upstream, or rejects with an SmtpReplyError. */
  mail(cmd: MailCommand, session: SMTPServerSession): Promise<SmtpReply>;
  rcpt(cmd: RcptCommand, session: SMTPServerSession): Promise<SmtpReply>;
  /** A command this listener refused without asking downstream (for the log). */
  refused(verb: 'MAIL' | 'RCPT', refusal: Refusal, line: string, session: SMTPServerSession): void;
}

const HANDLERS = Symbol('postseal envelope handlers');
type WithHandlers = SMTPServer & { [HANDLERS]?: EnvelopeHandlers };

export function useEnvelopeCommands(server: SMTPServer, handlers: EnvelopeHandlers): void {
  (server as WithHandlers)[HANDLERS] = handlers;
}

/** Whether this session's MAIL had SMTPUTF8 (RCPT may then carry UTF-8 addresses). */
const SMTPUTF8 = Symbol('postseal smtputf8');
type Session = SMTPServerSession & { [SMTPUTF8]?: boolean };

/** Called once by ./index.ts, after the version gate. */
export function installEnvelopeCommands(): void {
  const libraryMail = SMTPConnection.prototype.handler_MAIL;
  const libraryRcpt = SMTPConnection.prototype.handler_RCPT;

  SMTPConnection.prototype.handler_MAIL = function handleMail(this: SMTPConnection, command: Buffer, callback: () => void): void {
    const h = (this._server as WithHandlers)[HANDLERS];
    if (!h) return libraryMail.call(this, command, callback);
    // As the library does: a client that never sent EHLO gets its connection event here.
    this.emitConnection();
    if (this.session.envelope.mailFrom) return reply(this, replies.nestedMail, callback);
    const cmd = parseMail(command, h.announced);
    if ('refused' in cmd) return refuse(this, h, 'MAIL', cmd, command, callback);
    h.mail(cmd, this.session).then(
      (ok) => {
        (this.session as Session)[SMTPUTF8] = cmd.smtputf8;
        this.session.envelope.mailFrom = { address: cmd.address, args: false };
        reply(this, ok, callback);
      },
      (err) => fail(this, err, callback),
    );
  };

  SMTPConnection.prototype.handler_RCPT = function handleRcpt(this: SMTPConnection, command: Buffer, callback: () => void): void {
    const h = (this._server as WithHandlers)[HANDLERS];
    if (!h) return libraryRcpt.call(this, command, callback);
    if (!this.session.envelope.mailFrom) return reply(this, replies.needMail, callback);
    const cmd = parseRcpt(command, h.announced, (this.session as Session)[SMTPUTF8] === true);
    if ('refused' in cmd) return refuse(this, h, 'RCPT', cmd, command, callback);
    h.rcpt(cmd, this.session).then(
      (ok) => {
        // Every accepted recipient, duplicates included: LMTP answers DATA once per entry.
        this.session.envelope.rcptTo.push({ address: cmd.address, args: false });
        reply(this, ok, callback);
      },
      (err) => fail(this, err, callback),
    );
  };
}

function refuse(conn: SMTPConnection, h: EnvelopeHandlers, verb: 'MAIL' | 'RCPT', refusal: Refusal, command: Buffer, callback: () => void): void {
  h.refused(verb, refusal, command.toString('utf8'), conn.session);
  const r = replies[refusal.refused];
  reply(conn, { ...r, text: `${r.text} (${refusal.detail})` } as SmtpReply, callback);
}

function reply(conn: SMTPConnection, r: SmtpReply, callback: () => void): void {
  conn.send(Number(r.code), `${r.enhanced} ${r.text}`);
  callback();
}

/** An SmtpReplyError carries its own reply; anything else is a bug here, answered 451. */
function fail(conn: SMTPConnection, err: unknown, callback: () => void): void {
  const own = (err as { reply?: SmtpReply }).reply;
  reply(conn, own ?? replies.internalError, callback);
}
