/**
 * One mail transaction on a downstream connection, run in step with the upstream one:
 * MAIL when the upstream sends MAIL, RCPT for each RCPT, DATA once the stages let the
 * message through. Each call returns the downstream's reply so the listener can mirror it,
 * which is how no recipient is lost or delivered twice when the downstream treats
 * recipients differently. XFORWARD goes first when the downstream offers it, in the same
 * write as MAIL when it also offers PIPELINING (RFC 2920), and so does the first RCPT when the
 * caller has one (the listener opens the transaction at the first RCPT: one round trip).
 */
import { PostsealError, isPostsealError } from '../errors';
import { encodeXtext } from '../lib/envelope/xtext';
import type { ClientInfo, Envelope, Recipient } from '../transaction/transaction';
import type { DownstreamPool } from './pool';
import { isSuccess, replyLine } from './reply-map';
import type { DataReplies, DownstreamReply, SmtpClientConnection } from './smtp-client';

export type MailStart = Omit<Envelope, 'recipients'>;

/** What `begin` gives: the transaction (null when MAIL was refused), MAIL's reply and the first RCPT's. */
export interface Opened {
  readonly tx: DownstreamTransaction | null;
  readonly reply: DownstreamReply;
  readonly rcpt?: DownstreamReply;
}

export class DownstreamTransaction {
  private accepted = 0;
  private open = true;

  /** The downstream connection's TLS protocol (forward.tls), 'none' in plain text. */
  get tls(): string {
    return this.conn.tls?.version ?? 'none';
  }

  private constructor(
    private readonly pool: DownstreamPool,
    private readonly conn: SmtpClientConnection,
  ) {}

  /**
   * Opens the transaction; `reply` is the MAIL FROM reply (on a non-2xx the transaction is
   * already closed). With `first`, that recipient's RCPT goes in the same write as MAIL when
   * the downstream offers PIPELINING (else right after it) and `rcpt` is its reply; after a
   * refused MAIL the RCPT's own reply (a 503) is not the recipient's answer and is dropped.
   */
  static async begin(pool: DownstreamPool, mail: MailStart, client: ClientInfo | null, first?: Recipient): Promise<Opened> {
    const { conn, reused } = await pool.acquire();
    try {
      return await DownstreamTransaction.start(pool, conn, mail, client, first);
    } catch (err) {
      conn.destroy();
      // A pooled connection that the server closed meanwhile fails at once: try a fresh one.
      if (reused && isPostsealError(err, 'REINJECT_PROTOCOL')) {
        const fresh = await pool.acquire();
        try {
          return await DownstreamTransaction.start(pool, fresh.conn, mail, client, first);
        } catch (err2) {
          fresh.conn.destroy();
          throw err2;
        }
      }
      throw err;
    }
  }

  private static async start(pool: DownstreamPool, conn: SmtpClientConnection, mail: MailStart, client: ClientInfo | null, first?: Recipient): Promise<Opened> {
    const timeout = pool.target.commandTimeoutMs;
    // UTF-8 addresses to a server without SMTPUTF8 would be refused for good (553): tempfail instead.
    if (mail.smtputf8 && !conn.extensions.has('SMTPUTF8')) {
      pool.release(conn, false);
      throw new PostsealError('REINJECT_PROTOCOL', `downstream ${conn.label} does not offer SMTPUTF8, which this message needs (smtputf8_enable = yes on the reinjection smtpd)`);
    }
    const xforward = xforwardLines(conn.extensions.get('XFORWARD'), client);
    const mailLine = mailCommand(mail, conn.extensions);
    // A refused XFORWARD only loses the original client's details, never the mail: its reply
    // is read and not acted on. Pipelined with MAIL when the server allows it (as Postfix's own
    // smtp client sends XFORWARD to a content filter): one downstream round trip per message
    // fewer on the content-filter path (bench/README.md, "Tail latency").
    const rcptLine = first ? rcptCommand(first, conn.extensions) : undefined;
    let reply: DownstreamReply;
    let rcptReply: DownstreamReply | undefined;
    let refused: DownstreamReply | undefined;
    if (conn.extensions.has('PIPELINING') && (xforward.length || rcptLine)) {
      const replies = await conn.commands([...xforward, mailLine, ...(rcptLine ? [rcptLine] : [])], timeout);
      reply = replies[xforward.length];
      rcptReply = rcptLine ? replies[xforward.length + 1] : undefined;
      refused = replies.slice(0, xforward.length).find((r) => !isSuccess(r));
    } else {
      for (const line of xforward) {
        const r = await conn.command(line, timeout);
        if (!isSuccess(r)) {
          refused = r;
          break;
        }
      }
      reply = await conn.command(mailLine, timeout);
      if (rcptLine && isSuccess(reply)) rcptReply = await conn.command(rcptLine, timeout);
    }
    if (refused)
      pool.log.warn(
        { downstream: conn.label, reply: replyLine(refused) },
        'the downstream refused XFORWARD: the message goes on, but with postseal as its client (check smtpd_authorized_xforward_hosts on the reinjection smtpd)',
      );
    if (!isSuccess(reply)) {
      pool.release(conn, true);
      return { tx: null, reply };
    }
    const tx = new DownstreamTransaction(pool, conn);
    if (rcptReply && isSuccess(rcptReply)) tx.accepted++;
    return { tx, reply, rcpt: rcptReply };
  }

  async rcpt(r: Recipient): Promise<DownstreamReply> {
    const reply = await this.guard(() => this.conn.command(rcptCommand(r, this.conn.extensions), this.pool.target.commandTimeoutMs));
    if (isSuccess(reply)) this.accepted++;
    return reply;
  }

  /**
   * BDAT instead of DATA: an SMTP server that offers CHUNKING and PIPELINING (Postfix's smtpd
   * does), one round trip per message fewer. Not LMTP: what an LMTP server answers after a
   * refused chunk is not specified per recipient. `smtpd_discard_ehlo_keywords = chunking` on
   * the reinjection smtpd turns it off.
   */
  private get chunking(): boolean {
    return this.pool.target.protocol !== 'lmtp' && this.conn.extensions.has('CHUNKING') && this.conn.extensions.has('PIPELINING');
  }

  get acceptedRecipients(): number {
    return this.accepted;
  }

  /**
   * BDAT chunks (see `chunking`), or DATA and the message; one reply (SMTP) or one per accepted
   * recipient (LMTP). Only 354
   * lets the message go: a 4xx/5xx to DATA is the downstream's answer (mirrored), anything
   * else, a 2xx included, is a broken server and REINJECT_PROTOCOL, never an acceptance.
   */
  async data(message: AsyncIterable<Buffer>): Promise<DataReplies> {
    return this.guard(async () => {
      if (this.chunking) {
        const result = await this.conn.sendChunks(message, this.pool.target.dataDoneTimeoutMs);
        this.open = false;
        // After a refusal the server may still be in the transaction: RSET before reuse.
        this.pool.release(this.conn, !isSuccess(result.replies[0]));
        return result;
      }
      const go = await this.conn.command('DATA', this.pool.target.commandTimeoutMs);
      if (go.code === 354) {
        const count = this.pool.target.protocol === 'lmtp' ? this.accepted : 1;
        const result = await this.conn.sendData(message, count, this.pool.target.dataDoneTimeoutMs);
        if (result.failure) this.cancel();
        else this.finish();
        return result;
      }
      if (go.code >= 400 && go.code < 600) {
        this.abort();
        return { replies: [go] };
      }
      throw new PostsealError('REINJECT_PROTOCOL', `downstream ${this.conn.label} answered DATA with ${go.code} ${go.text.slice(0, 200)}`);
    });
  }

  /** Ends the transaction without sending the message (RSET before reuse). */
  abort(): void {
    if (!this.open) return;
    this.open = false;
    this.pool.release(this.conn, true);
  }

  /** Drops the connection mid-command (deadline): the downstream discards the partial transaction. */
  cancel(): void {
    this.open = false;
    this.conn.destroy();
  }

  private finish(): void {
    this.open = false;
    this.pool.release(this.conn, false);
  }

  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      this.open = false;
      this.conn.destroy();
      throw err;
    }
  }
}

/**
 * MAIL with the parameters the downstream announced, each as the upstream wrote it: the path
 * and ENVID are never decoded and re-encoded, so the downstream reads what Postfix wrote.
 */
export function mailCommand(mail: MailStart, ext: ReadonlyMap<string, string>): string {
  const params: string[] = [];
  if (mail.body && ext.has('8BITMIME')) params.push(`BODY=${mail.body}`);
  if (mail.smtputf8 && ext.has('SMTPUTF8')) params.push('SMTPUTF8');
  if (ext.has('DSN')) {
    if (mail.ret) params.push(`RET=${mail.ret}`);
    if (mail.envid !== undefined) params.push(`ENVID=${mail.envid}`);
  }
  return [`MAIL FROM:<${mail.mailFrom}>`, ...params].join(' ');
}

/** RCPT with NOTIFY and ORCPT as written (ORCPT still xtext), when the downstream offers DSN. */
export function rcptCommand(r: Recipient, ext: ReadonlyMap<string, string>): string {
  const params: string[] = [];
  if (ext.has('DSN')) {
    if (r.notify !== undefined) params.push(`NOTIFY=${r.notify}`);
    if (r.orcpt !== undefined) params.push(`ORCPT=${r.orcpt}`);
  }
  return [`RCPT TO:<${r.address}>`, ...params].join(' ');
}

const XFORWARD_ORDER = ['NAME', 'ADDR', 'PORT', 'PROTO', 'HELO', 'IDENT', 'SOURCE'] as const;

/** XFORWARD commands for the attributes the downstream announced, each line under 512 octets. */
export function xforwardLines(announced: string | undefined, client: ClientInfo | null): string[] {
  if (announced === undefined || !client) return [];
  const wanted = new Set(announced.toUpperCase().split(/\s+/));
  const attrs: string[] = [];
  for (const key of XFORWARD_ORDER) {
    const value = client[key.toLowerCase() as Lowercase<typeof key>];
    if (!wanted.has(key) || value === undefined) continue;
    const v = key === 'ADDR' && value.includes(':') ? `IPV6:${value}` : value;
    attrs.push(`${key}=${encodeXtext(v)}`);
  }
  const lines: string[] = [];
  for (const a of attrs) {
    const last = lines[lines.length - 1];
    if (last && last.length + a.length + 1 <= 500) lines[lines.length - 1] = `${last} ${a}`;
    else lines.push(`XFORWARD ${a}`);
  }
  return lines;
}
