/**
 * A correction to smtp-server (version pinned exactly in package.json, because this reaches
 * into its connection class) that postseal needs behind Postfix.
 *
 * XFORWARD HELO=[UNAVAILABLE], which Postfix sends for mail that never had an SMTP client
 * (sendmail/pickup submissions, bounces), makes smtp-server forget the EHLO name of the
 * connection, after which it answers MAIL with "503 send HELO/EHLO first" and Postfix defers
 * the message for ever. XFORWARD describes the original client, not this connection
 * (Postfix XFORWARD_README), so the connection's own EHLO name is kept.
 * Remove when smtp-server stops clearing the name (test/listener/session.test.ts tells).
 */
import { SMTPConnection } from 'smtp-server/lib/smtp-connection';

/** Called once by ./index.ts, after the version gate. */
export function installXforwardHelo(): void {
  const original = SMTPConnection.prototype.handler_XFORWARD;
  SMTPConnection.prototype.handler_XFORWARD = function keepEhloName(this: SMTPConnection, command: Buffer, callback: () => void): void {
    const ehloName = this.hostNameAppearsAs;
    original.call(this, command, () => {
      if (!this.hostNameAppearsAs && ehloName) {
        this.hostNameAppearsAs = ehloName;
        this.session.hostNameAppearsAs = ehloName;
      }
      callback();
    });
  };
}
