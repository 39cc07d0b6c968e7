/**
 * Downstream connections for one forward target, kept open for reuse (Postfix's own smtp
 * client does the same with its connection cache). A connection goes back to the pool only
 * after a complete transaction, or after an RSET that the server answered with 250; one
 * idle longer than idleTimeoutMs is closed with QUIT, before Postfix's smtpd_timeout.
 */
import type { Logger } from 'pino';
import type { ForwardTarget } from '../config/bank-schema';
import { SmtpClientConnection } from './smtp-client';

export class DownstreamPool {
  private idle: { conn: SmtpClientConnection; timer: NodeJS.Timeout }[] = [];
  private closing = false;

  constructor(
    readonly target: ForwardTarget,
    private readonly heloName: string,
    readonly log: Logger,
  ) {}

  /** A connection ready for MAIL FROM; `reused` tells whether it came from the pool. */
  async acquire(): Promise<{ conn: SmtpClientConnection; reused: boolean }> {
    while (this.idle.length) {
      const { conn, timer } = this.idle.pop()!;
      clearTimeout(timer);
      if (conn.clean) return { conn, reused: true };
      conn.destroy();
    }
    return { conn: await SmtpClientConnection.connect(this.target, this.heloName), reused: false };
  }

  /** Back to the pool; `dirty` means a transaction was opened and not finished. */
  release(conn: SmtpClientConnection, dirty: boolean): void {
    if (!conn.usable || this.closing || this.idle.length >= this.target.maxIdleConnections) {
      void conn.quit(this.target.commandTimeoutMs);
      return;
    }
    if (!dirty) return this.park(conn);
    conn.command('RSET', this.target.commandTimeoutMs).then(
      (reply) => (reply.code === 250 ? this.park(conn) : conn.destroy()),
      (err) => {
        this.log.debug({ err, downstream: conn.label }, 'RSET failed, connection dropped');
        conn.destroy();
      },
    );
  }

  async close(): Promise<void> {
    this.closing = true;
    const idle = this.idle.splice(0);
    await Promise.all(
      idle.map(({ conn, timer }) => {
        clearTimeout(timer);
        return conn.quit(this.target.commandTimeoutMs);
      }),
    );
  }

  private park(conn: SmtpClientConnection): void {
    const entry = {
      conn,
      timer: setTimeout(() => {
        this.idle = this.idle.filter((e) => e !== entry);
        void conn.quit(this.target.commandTimeoutMs);
      }, this.target.idleTimeoutMs),
    };
    entry.timer.unref();
    this.idle.push(entry);
  }
}
