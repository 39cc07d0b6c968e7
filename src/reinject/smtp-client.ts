/**
 * The SMTP/LMTP client that hands mail back to Postfix (RFC 5321, RFC 2033), one command at a
 * time so each upstream command can mirror the downstream's reply. The message goes as DATA,
 * or in BDAT chunks (RFC 3030) to an SMTP server that offers CHUNKING and PIPELINING, as
 * Postfix's reinjection smtpd does: no DATA/354 round trip and no dot-stuffing.
 *
 * Written here rather than on nodemailer's SMTPConnection because the filter needs what that
 * client has no hook for: XFORWARD between EHLO and MAIL (Postfix XFORWARD_README), each
 * reply of MAIL, RCPT and DATA as it comes, and one reply per recipient after LMTP data.
 *
 * STARTTLS (RFC 3207) per forward.tls: after EHLO when announced, then EHLO again on the
 * encrypted connection (the first EHLO's keywords are forgotten). `may` encrypts without
 * verifying and stays plain only if STARTTLS is not announced; `encrypt` requires it and
 * verifies the certificate (caFile, verifyName). A handshake that fails is an error in both
 * modes, never a silent retry in plain text: Postfix keeps the mail and retries.
 *
 * Fails with REINJECT_REFUSED (connect), REINJECT_TIMEOUT (any reply late; the connection
 * is dropped), REINJECT_PROTOCOL (connection closed, garbage, unexpected 421), REINJECT_TLS
 * (STARTTLS missing under encrypt, refused, handshake or certificate failed).
 */
import net from 'node:net';
import { once } from 'node:events';
import type { ForwardTarget } from '../config/bank-schema';
import { PostsealError } from '../errors';
import { handshake } from './starttls';

export interface DownstreamReply {
  readonly code: number;
  /** RFC 3463 code if the server wrote one. */
  readonly enhanced?: string;
  /** The text of the last line, without code and enhanced code. */
  readonly text: string;
  /** Every line's text after the code, for EHLO keywords. */
  readonly lines: readonly string[];
}

/** The end-of-data replies read, in recipient order; with `failure`, the rest never came. */
export interface DataReplies {
  readonly replies: readonly DownstreamReply[];
  readonly failure?: PostsealError;
}

type Waiter = { resolve: (r: DownstreamReply) => void; reject: (e: Error) => void; timer: NodeJS.Timeout };

const MAX_REPLY_BYTES = 64 * 1024;
const FLUSH_BYTES = 256 * 1024;

export class SmtpClientConnection {
  readonly extensions = new Map<string, string>();
  /** The TLS protocol and cipher once STARTTLS succeeded (TLSv1.3 ...); null in plain text. */
  tls: { version: string; cipher: string } | null = null;
  /** False once the connection can no longer carry a transaction. */
  usable = true;
  private buffer = '';
  private lines: string[] = [];
  private waiters: Waiter[] = [];
  /** Replies nobody asked for yet (LMTP sends all recipients' replies at once). */
  private unread: DownstreamReply[] = [];
  private closedError: Error | null = null;
  /** One for the connection's life: a listener per drain wait would pile up on a pooled connection. */
  private closed!: Promise<void>;

  private constructor(
    private socket: net.Socket,
    readonly target: ForwardTarget,
  ) {
    this.attach(socket);
    socket.setNoDelay(true);
  }

  private attach(socket: net.Socket): void {
    this.socket = socket;
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', (err) => this.fail(new PostsealError('REINJECT_PROTOCOL', `downstream ${this.label}: ${err.message}`, { cause: err })));
    socket.on('close', () => this.fail(new PostsealError('REINJECT_PROTOCOL', `downstream ${this.label} closed the connection`)));
  }

  /** A server that spoke while the connection sat idle (421 timeout notice) is not reused. */
  get clean(): boolean {
    return this.usable && this.unread.length === 0;
  }

  get label(): string {
    return `${this.target.host}:${this.target.port}`;
  }

  static async connect(target: ForwardTarget, heloName: string): Promise<SmtpClientConnection> {
    const socket = net.connect({ host: target.host, port: target.port });
    const conn = new SmtpClientConnection(socket, target);
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new PostsealError('REINJECT_TIMEOUT', `connect to ${conn.label} timed out`)), target.connectTimeoutMs);
        socket.once('connect', () => {
          clearTimeout(timer);
          resolve();
        });
        socket.once('error', (err) => {
          clearTimeout(timer);
          reject(new PostsealError('REINJECT_REFUSED', `connect to ${conn.label}: ${err.message}`, { cause: err }));
        });
      });
      const greeting = await conn.read(target.connectTimeoutMs);
      if (greeting.code !== 220) throw new PostsealError('REINJECT_PROTOCOL', `downstream ${conn.label} greeted with ${greeting.code} ${greeting.text}`);
      await conn.hello(heloName);
      const mode = target.tls?.mode ?? 'none';
      if (mode !== 'none') {
        if (conn.extensions.has('STARTTLS')) {
          await conn.startTls();
          await conn.hello(heloName);
        } else if (mode === 'encrypt') {
          throw new PostsealError('REINJECT_TLS', `downstream ${conn.label} does not announce STARTTLS (forward.tls.mode: encrypt)`);
        }
      }
      return conn;
    } catch (err) {
      conn.destroy();
      throw err;
    }
  }

  /** EHLO or LHLO; the keywords of the last one are the connection's extensions. */
  private async hello(heloName: string): Promise<void> {
    const hello = this.target.protocol === 'lmtp' ? 'LHLO' : 'EHLO';
    const ehlo = await this.command(`${hello} ${heloName}`, this.target.commandTimeoutMs);
    if (ehlo.code !== 250) throw new PostsealError('REINJECT_PROTOCOL', `downstream ${this.label} answered ${hello} with ${ehlo.code} ${ehlo.text}`);
    this.extensions.clear();
    for (const line of ehlo.lines.slice(1)) {
      const [keyword, ...params] = line.split(' ');
      this.extensions.set(keyword.toUpperCase(), params.join(' '));
    }
  }

  /** STARTTLS and the handshake on the same socket; everything read before it is dropped. */
  private async startTls(): Promise<void> {
    const reply = await this.command('STARTTLS', this.target.commandTimeoutMs);
    if (reply.code !== 220) throw new PostsealError('REINJECT_TLS', `downstream ${this.label} answered STARTTLS with ${reply.code} ${reply.text}`);
    const raw = this.socket;
    raw.removeAllListeners('data');
    raw.removeAllListeners('error');
    raw.removeAllListeners('close');
    // The TLS socket reports what happens underneath; an error event with no listener would throw.
    raw.on('error', () => undefined);
    // A reply pipelined after 220 would be a plain-text injection (RFC 3207 5; CVE-2011-0411).
    this.buffer = '';
    this.lines = [];
    this.unread = [];
    const secure = await handshake(raw, this.target, this.label);
    this.attach(secure);
    secure.setNoDelay(true);
    this.tls = { version: secure.getProtocol() ?? 'unknown', cipher: secure.getCipher()?.name ?? 'unknown' };
  }

  /** Sends one command line and waits for its reply. */
  async command(line: string, timeoutMs: number): Promise<DownstreamReply> {
    this.write(`${line}\r\n`);
    const reply = await this.read(timeoutMs);
    if (reply.code === 421) this.usable = false;
    return reply;
  }

  /**
   * Several commands in one write, their replies in order (RFC 2920 PIPELINING: only for a
   * server that announced it). One write and one wait instead of one per command: each
   * round trip wakes the downstream process and then this one.
   */
  async commands(lines: readonly string[], timeoutMs: number): Promise<DownstreamReply[]> {
    this.write(lines.map((l) => `${l}\r\n`).join(''));
    const replies: DownstreamReply[] = [];
    for (let i = 0; i < lines.length; i++) {
      const reply = await this.read(timeoutMs);
      if (reply.code === 421) this.usable = false;
      replies.push(reply);
    }
    return replies;
  }

  /**
   * Streams the message after a 354: line endings made CRLF, leading dots doubled, then the
   * final dot. Returns one reply (SMTP) or `replies` replies (LMTP, one per accepted recipient).
   * An LMTP server that goes away after answering some recipients has delivered to those:
   * their replies are kept and `failure` says what became of the rest.
   */
  async sendData(message: AsyncIterable<Buffer>, replies: number, timeoutMs: number): Promise<DataReplies> {
    const stuffer = new DotStuffer();
    // Corked, the message leaves in one writev per FLUSH_BYTES rather than one write per
    // chunk: on loopback a write costs about as much as parsing a small message does.
    this.socket.cork();
    try {
      for await (const chunk of message) {
        const out = stuffer.push(chunk);
        if (out.length) this.socket.write(out);
        if (this.socket.writableLength >= FLUSH_BYTES) {
          this.socket.uncork();
          if (this.socket.writableNeedDrain) await this.drained(timeoutMs);
          this.socket.cork();
        }
        if (this.closedError) throw this.closedError;
      }
      this.write(stuffer.end());
    } finally {
      this.socket.uncork();
    }
    const result: DownstreamReply[] = [];
    for (let i = 0; i < replies; i++) {
      try {
        result.push(await this.read(timeoutMs));
      } catch (err) {
        if (i === 0) throw err;
        return { replies: result, failure: err as PostsealError };
      }
    }
    return { replies: result };
  }

  /**
   * The message in BDAT chunks of up to FLUSH_BYTES, pipelined (RFC 3030 4.2): each chunk is
   * `BDAT <octets>` and its octets, the last `BDAT <octets> LAST`; the replies, one per chunk,
   * are read after the last. Line endings are made CRLF as for DATA (the downstream gets the
   * same octets DATA would leave it with); a message without a final line ending gets one.
   * The result is the first refusal if a chunk was refused (a later chunk's reply is about
   * the refused transaction, not the message), else the LAST chunk's reply. A server that
   * refuses a chunk and then accepts LAST has answered nonsense: REINJECT_PROTOCOL (a 4xx
   * upstream, never a 250 or a 5xx for a message whose fate is not known). A refusal seen
   * while chunks are still going stops them (no LAST), and stays the answer if the server
   * then hangs up; after a refused chunk other than LAST the connection is not reused.
   */
  async sendChunks(message: AsyncIterable<Buffer>, timeoutMs: number): Promise<DataReplies> {
    const lines = new DotStuffer(false);
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let chunks = 0;
    /** A chunk was refused before the message was all sent: no more chunks, no LAST. */
    let stopped = false;
    const flush = (last: boolean) => {
      this.write(`BDAT ${pendingBytes}${last ? ' LAST' : ''}\r\n`);
      for (const b of pending) this.socket.write(b);
      chunks++;
      pending = [];
      pendingBytes = 0;
    };
    this.socket.cork();
    try {
      for await (const chunk of message) {
        const out = lines.push(chunk);
        if (out.length) {
          pending.push(out);
          pendingBytes += out.length;
        }
        if (pendingBytes >= FLUSH_BYTES) {
          flush(false);
          this.socket.uncork();
          if (this.socket.writableNeedDrain) await this.drained(timeoutMs);
          this.socket.cork();
          // RFC 3030 2: no more chunks once one is refused; the rest of a large message need
          // not cross (Postfix's smtpd would read and drop it, an error per chunk).
          if (this.unread.some((r) => !(r.code >= 200 && r.code < 300))) {
            stopped = true;
            break;
          }
        }
        if (this.closedError) throw this.closedError;
      }
      if (!stopped) {
        const tail = lines.end();
        if (tail.length) {
          pending.push(tail);
          pendingBytes += tail.length;
        }
        flush(true);
      }
    } catch (err) {
      // Hung up while chunks were still going: a chunk it had refused is the answer (below).
      const early = this.unread.find((r) => !(r.code >= 200 && r.code < 300));
      if (!early) throw err;
      this.destroy();
      return { replies: [early] };
    } finally {
      this.socket.uncork();
    }
    let refused: DownstreamReply | undefined;
    // Once a chunk is refused the transaction has failed (RFC 3030 2), whatever follows: a
    // server that then hangs up or goes quiet has not taken the message. Postfix's smtpd counts
    // each chunk it skips after a refusal as an error and, at smtpd_hard_error_limit (20),
    // answers 421 and closes: a 5 MB message refused at its first chunk would otherwise be
    // deferred (451) for days instead of refused.
    const next = async (): Promise<DownstreamReply | null> => {
      try {
        const reply = await this.read(timeoutMs);
        if (reply.code === 421) this.usable = false;
        return reply;
      } catch (err) {
        if (!refused) throw err;
        this.destroy();
        return null;
      }
    };
    for (let i = 1; i < chunks; i++) {
      const reply = await next();
      if (!reply) return { replies: [refused!] };
      if (!refused && !(reply.code >= 200 && reply.code < 300)) refused = reply;
    }
    const last = await next();
    if (!last) return { replies: [refused!] };
    if (stopped) refused ??= last;
    if (!refused) return { replies: [last] };
    // Postfix's smtpd counted every chunk it skipped as an error, and sleeps a second before
    // each reply once there are smtpd_soft_error_limit (10) of them, until a message succeeds:
    // such a connection is not worth an RSET and a place in the pool.
    this.usable = false;
    if (!stopped && last.code >= 200 && last.code < 300) {
      this.destroy();
      throw new PostsealError('REINJECT_PROTOCOL', `downstream ${this.label} refused a BDAT chunk (${refused.code} ${refused.text.slice(0, 200)}) and then accepted the message`);
    }
    return { replies: [refused] };
  }

  /**
   * Until the socket drains or closes. `once` rejects with the socket's raw error (a reset): the
   * connection's own error listener has already made it a REINJECT_PROTOCOL, which the caller
   * throws next; the raw one would reach the upstream as a postseal bug (451 4.3.0). A server
   * that stops reading for `timeoutMs` is REINJECT_TIMEOUT, as a late reply is: the message
   * deadline bounds deliveries, but a quarantine release, a bounce or a notice has none.
   */
  private async drained(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.fail(new PostsealError('REINJECT_TIMEOUT', `downstream ${this.label} stopped reading the message for ${timeoutMs} ms`));
        resolve();
      }, timeoutMs);
    });
    try {
      await Promise.race([once(this.socket, 'drain').catch(() => undefined), this.closed, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** QUIT politely; the socket goes either way. */
  async quit(timeoutMs: number): Promise<void> {
    this.usable = false;
    if (!this.closedError) await this.command('QUIT', timeoutMs).catch(() => undefined);
    this.destroy();
  }

  destroy(): void {
    this.usable = false;
    this.socket.destroy();
  }

  private write(data: string | Buffer): void {
    if (this.closedError) throw this.closedError;
    this.socket.write(data);
  }

  private read(timeoutMs: number): Promise<DownstreamReply> {
    const ready = this.unread.shift();
    if (ready) return Promise.resolve(ready);
    if (this.closedError) return Promise.reject(this.closedError);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const err = new PostsealError('REINJECT_TIMEOUT', `downstream ${this.label} did not answer within ${timeoutMs} ms`);
        this.fail(err);
      }, timeoutMs);
      this.waiters.push({ resolve, reject, timer });
      this.deliver();
    });
  }

  private onData(data: Buffer): void {
    this.buffer += data.toString('latin1');
    if (this.buffer.length > MAX_REPLY_BYTES) {
      this.fail(new PostsealError('REINJECT_PROTOCOL', `downstream ${this.label} sent an over-long reply`));
      return;
    }
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      this.lines.push(this.buffer.slice(0, nl).replace(/\r$/, ''));
      this.buffer = this.buffer.slice(nl + 1);
    }
    this.deliver();
  }

  /** Hands complete replies to waiters in order, or keeps them until read. */
  private deliver(): void {
    while (this.lines.length) {
      const end = this.lines.findIndex((l) => !/^\d{3}-/.test(l));
      if (end < 0) return;
      const replyLines = this.lines.splice(0, end + 1);
      const last = replyLines[replyLines.length - 1];
      const m = /^(\d{3})(?: (.*))?$/.exec(last);
      if (!m) {
        this.fail(new PostsealError('REINJECT_PROTOCOL', `downstream ${this.label} sent garbage: ${last.slice(0, 200)}`));
        return;
      }
      const rest = m[2] ?? '';
      const em = /^([245]\.\d{1,3}\.\d{1,3})\s+(.*)$/.exec(rest);
      const reply = { code: Number(m[1]), enhanced: em?.[1], text: em ? em[2] : rest, lines: replyLines.map((l) => l.slice(4)) };
      const waiter = this.waiters.shift();
      if (!waiter) {
        this.unread.push(reply);
        continue;
      }
      clearTimeout(waiter.timer);
      waiter.resolve(reply);
    }
  }

  private fail(err: Error): void {
    if (!this.closedError) this.closedError = err;
    this.usable = false;
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(this.closedError);
    }
    this.socket.destroy();
  }
}

/**
 * RFC 5321 4.5.2 transparency, and bare LF made CRLF (SMTP lines end in CRLF, RFC 5321 2.3.8).
 * With `dots` false (BDAT, which needs no transparency) only the line endings.
 */
export class DotStuffer {
  private atLineStart = true;
  private lastWasCR = false;

  constructor(private readonly dots = true) {}

  /** The chunk itself when nothing in it changes (most mail), else a copy with the changes. */
  push(chunk: Buffer): Buffer {
    const out: Buffer[] = [];
    let copied = 0;
    let pos = 0;
    while (pos < chunk.length) {
      if (this.dots && this.atLineStart && chunk[pos] === 0x2e) {
        out.push(chunk.subarray(copied, pos), DOT);
        copied = pos;
      }
      this.atLineStart = false;
      const nl = chunk.indexOf(0x0a, pos);
      if (nl < 0) {
        this.lastWasCR = chunk[chunk.length - 1] === 0x0d;
        break;
      }
      const crBefore = nl > 0 ? chunk[nl - 1] === 0x0d : this.lastWasCR;
      if (!crBefore) {
        out.push(chunk.subarray(copied, nl), CRLF);
        copied = nl + 1;
      }
      pos = nl + 1;
      this.atLineStart = true;
      this.lastWasCR = false;
    }
    if (out.length === 0) return chunk;
    out.push(chunk.subarray(copied));
    return Buffer.concat(out);
  }

  /** DATA: the final dot (after a CRLF the message lacked); BDAT: only that CRLF. */
  end(): Buffer {
    if (!this.dots) return this.atLineStart ? EMPTY : CRLF;
    return Buffer.from(this.atLineStart ? '.\r\n' : '\r\n.\r\n');
  }
}

const DOT = Buffer.from('.');
const CRLF = Buffer.from('\r\n');
const EMPTY = Buffer.alloc(0);
