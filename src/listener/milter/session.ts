/**
 * One milter connection from the MTA (Postfix opens one per SMTP session, or per message for
 * non_smtpd_milters): option negotiation, then any number of messages, each MAIL .. EOM or
 * ended by SMFIC_ABORT. The Transaction is built as the SMTP listener builds it: the client
 * from SMFIC_CONNECT and HELO, the envelope from MAIL/RCPT with their ESMTP parameters
 * (lib/envelope/commands.ts), Postfix's queue id from the {i} macro; the header fields and
 * body are spooled (transaction/spool.ts: memory, then a file) with CRLF line ends, the
 * bytes the SMTP path would have seen. The bank is chosen at MAIL: the listener's, then
 * bankRules (macros such as {daemon_name} and {auth_authen}, client networks, senders).
 *
 * What is negotiated (actions, no-reply steps, macro lists) is in envelope.ts.
 *
 * Failures: a packet that does not parse, or a command out of order, closes the connection
 * (MILTER_PROTOCOL, logged; Postfix applies milter_default_action); a connection that does
 * not negotiate is closed after the bank's timeouts.socketIdleTimeoutMs (once negotiated, the
 * MTA closes it: negotiate()); SMFIC_ABORT, or the MTA going away,
 * aborts the message and its pipeline.
 */
import type { Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import type { BankChoice } from '../../config/bank-rules';
import type { ListenerConfig } from '../../config/main-schema';
import { FrameReader } from '../../lib/milter/frames';
import { Action, decodeCommand, MILTER_VERSION, type MilterCommand, MilterProtocolError, optnegReply, Proto, Reply, replyCode, simpleReply } from '../../lib/milter/protocol';
import { noTelemetry } from '../../lib/telemetry';
import { replies } from '../../smtp/replies';
import { memorySpool, spoolFrom, type Spool } from '../../transaction/spool';
import type { ClientInfo, Envelope, Recipient } from '../../transaction/transaction';
import type { SessionContext } from '../session';
import { endOfMessage } from './end-of-message';
import { macroLists, mailOf, rcptOf, WANTED_ACTIONS, WANTED_PROTOCOL } from './envelope';

/** Longest packet accepted: a body chunk is at most 64 KiB, a header field at most spool.maxHeaderBytes. */
const packetLimit = (maxHeaderBytes: number) => maxHeaderBytes + 65536;
const CRLF = Buffer.from('\r\n');
interface MessageState {
  readonly ctx: SessionContext;
  readonly choice: BankChoice | null;
  readonly mail: Omit<Envelope, 'recipients'>;
  readonly recipients: Recipient[];
  readonly aborted: AbortController;
  header: Buffer[];
  headerBytes: number;
  headerTooBig: boolean;
  /** Header section and body so far, while they fit in memory (null before EOH). */
  body: Buffer[] | null;
  bodyBytes: number;
  /** Past the spool's memory threshold: the rest streams into a spool file. */
  stream: PassThrough | null;
  spool: Promise<Spool> | null;
}

export class MilterSession {
  private readonly reader: FrameReader;
  private readonly queue: MilterCommand[] = [];
  private pumping = false;
  private actions = 0;
  private protocol = 0;
  private readonly macros = new Map<string, string>();
  private client: { name?: string; addr?: string; port?: string; helo?: string } = {};
  private msg: MessageState | null = null;
  private messages = 0;
  private closed = false;
  private draining = false;
  /** Resolves when no message is between EOM and its answer. */
  busy: Promise<void> | null = null;

  constructor(
    private readonly socket: Socket,
    readonly id: string,
    private readonly listener: ListenerConfig,
    private readonly current: () => SessionContext,
    private readonly onClose: () => void,
  ) {
    const ctx = current();
    this.reader = new FrameReader(packetLimit(ctx.spool.headBytes ?? 1048576));
    socket.setNoDelay(true);
    // Until the MTA negotiates (negotiate() turns it off).
    socket.setTimeout(ctx.bank.timeouts.socketIdleTimeoutMs);
    socket.on('timeout', () => this.fail(new MilterProtocolError(`no command for ${ctx.bank.timeouts.socketIdleTimeoutMs} ms`), 'idle'));
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', () => this.end());
    socket.on('close', () => this.end());
    (ctx.telemetry ?? noTelemetry).connection(1);
  }

  /** Closes the connection between messages; a message in flight is let finish (drain). */
  closeWhenIdle(): void {
    this.draining = true;
    if (!this.busy) this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
    this.end();
  }

  private receive(chunk: Buffer): void {
    try {
      for (const f of this.reader.push(chunk)) {
        const cmd = decodeCommand(f.code, f.data);
        // An abort does not wait behind the end of message it cancels.
        if (cmd.kind === 'abort' && this.busy) this.abortMessage();
        this.queue.push(cmd);
      }
    } catch (err) {
      return this.fail(err, 'bad packet');
    }
    void this.pump();
  }

  /** Commands in order; only end of message waits (for the pipeline). */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length && !this.closed) {
        const cmd = this.queue.shift()!;
        if (cmd.kind === 'eom') {
          const done = this.endOfMessage(cmd.chunk);
          this.busy = done.then(
            () => undefined,
            () => undefined,
          );
          await done;
          this.busy = null;
        } else this.handle(cmd);
      }
    } catch (err) {
      this.fail(err, 'command');
    } finally {
      this.pumping = false;
    }
  }

  private handle(cmd: Exclude<MilterCommand, { kind: 'eom' }>): void {
    switch (cmd.kind) {
      case 'optneg':
        return this.negotiate(cmd.version, cmd.actions, cmd.protocol);
      case 'macro':
        for (const [k, v] of cmd.macros) this.macros.set(k, v);
        return;
      case 'connect':
        this.abortMessage();
        this.client = { name: cmd.hostname, ...(cmd.family === 'inet' || cmd.family === 'inet6' ? { addr: cmd.address, port: String(cmd.port) } : {}) };
        return this.reply(Proto.NR_CONN);
      case 'helo':
        this.client = { ...this.client, helo: cmd.name };
        return this.reply(Proto.NR_HELO);
      case 'mail':
        this.mailFrom(cmd.args);
        return this.reply(Proto.NR_MAIL);
      case 'rcpt':
        return this.rcptTo(cmd.args);
      case 'data':
        return this.reply(Proto.NR_DATA);
      case 'header':
        this.header(cmd.name, cmd.value);
        return this.reply(Proto.NR_HDR);
      case 'eoh':
        this.startBody();
        return this.reply(Proto.NR_EOH);
      case 'body':
        this.bodyChunk(cmd.chunk);
        return this.reply(Proto.NR_BODY);
      case 'unknown':
        return this.reply(Proto.NR_UNKN);
      case 'abort':
        return this.abortMessage();
      case 'quitNc':
        this.abortMessage();
        this.macros.clear();
        this.client = {};
        return;
      case 'quit':
        this.abortMessage();
        this.socket.end();
        return;
    }
  }

  private negotiate(version: number, offeredActions: number, offeredProtocol: number): void {
    if (version < 2) throw new MilterProtocolError(`milter protocol version ${version} is too old`);
    this.actions = offeredActions & WANTED_ACTIONS;
    this.protocol = offeredProtocol & WANTED_PROTOCOL;
    const ctx = this.current();
    const macros = this.actions & Action.SETSYMLIST ? macroLists(ctx.bankChooser?.macros ?? []) : new Map<number, string>();
    this.write([optnegReply(Math.min(version, MILTER_VERSION), this.actions, this.protocol, macros)]);
    // From here the MTA's silence is its SMTP client's pace, which postseal cannot see: Postfix
    // negotiates when the client connects, holds the commands we need not answer (CONNECT,
    // HELO, MAIL) in its buffer until one we answer (RCPT), and hands over the header and body
    // only once the client's DATA is complete. Each client wait is up to smtpd_timeout, DATA
    // has no limit, and their sum has none: an idle timeout here would close connections of
    // slow but legitimate clients, which Postfix then answers with milter_default_action
    // (451 4.7.1), again at every retry. Postfix closes the connection when the session ends.
    this.socket.setTimeout(0);
  }

  private mailFrom(args: string[]): void {
    this.abortMessage();
    const portCtx = this.current();
    const cmd = mailOf(args);
    let ctx = portCtx;
    let choice: BankChoice | null = null;
    if (portCtx.bankChooser && portCtx.contextOf) {
      const c = portCtx.bankChooser.choose(this.listener, this.client.addr?.replace(/^ipv6:/i, ''), cmd.address, this.macros);
      const other = portCtx.contextOf(c.bank);
      if (other) {
        ctx = other;
        choice = c;
      }
    }
    this.msg = {
      ctx,
      choice,
      mail: { mailFrom: cmd.address, smtputf8: cmd.smtputf8, body: cmd.body, ret: cmd.ret, envid: cmd.envid },
      recipients: [],
      aborted: new AbortController(),
      header: [],
      headerBytes: 0,
      headerTooBig: false,
      body: null,
      bodyBytes: 0,
      stream: null,
      spool: null,
    };
  }

  private rcptTo(args: string[]): void {
    const msg = this.need('RCPT');
    if (msg.recipients.length >= msg.ctx.bank.maxRecipients && !this.localSubmission()) {
      if (this.protocol & Proto.NR_RCPT) return;
      return this.write([replyCode(replies.tooManyRecipients.code, replies.tooManyRecipients.enhanced, replies.tooManyRecipients.text)]);
    }
    msg.recipients.push(rcptOf(args, msg.mail.smtputf8));
    this.reply(Proto.NR_RCPT);
  }

  /**
   * A local submission (sendmail, pickup; non_smtpd_milters): Postfix's cleanup plays its SMTP
   * client, with port 0 (cleanup_milter.c). It cannot take a refused recipient there: it logs
   * "milter configuration error" and leaves the message in the maildrop, where pickup tries it
   * again every minute, forever, and its sender is never told. So such a message keeps every
   * recipient (as on the content-filter path, where Postfix splits the delivery itself).
   */
  private localSubmission(): boolean {
    return this.client.port === '0';
  }

  /** Header fields as they will be queued: CRLF line ends, the leading space as sent (or one space). */
  private header(name: string, value: Buffer): void {
    const msg = this.need('HEADER');
    if (msg.headerTooBig) return;
    const text = value.toString('latin1').replace(/\r?\n/g, '\r\n');
    const sep = this.protocol & Proto.HDR_LEADSPC ? ':' : ': ';
    const raw = Buffer.from(`${name}${sep}${text}\r\n`, 'latin1');
    msg.headerBytes += raw.length;
    const limit = msg.ctx.spool.headBytes ?? 1048576;
    if (msg.headerBytes + 2 > limit) {
      msg.headerTooBig = true;
      msg.header = [];
      return;
    }
    msg.header.push(raw);
  }

  private startBody(): void {
    const msg = this.need('EOH');
    if (msg.body) return;
    msg.body = [];
    this.append(msg, Buffer.concat([...msg.header, CRLF]));
    msg.header = [];
  }

  private bodyChunk(chunk: Buffer): void {
    const msg = this.need('BODY');
    if (!msg.body) this.startBody();
    if (chunk.length) this.append(msg, chunk);
  }

  /**
   * Kept in memory while the message fits under the spool's memory threshold (and the size
   * limit), as most do: no stream for them. Past it, what came so far and the rest go through
   * spoolFrom into a spool file, which also enforces the size limit.
   */
  private append(msg: MessageState, chunk: Buffer): void {
    // Refused with 552 at end of message whatever follows: none of the body is kept (an
    // attacker's oversized header would otherwise buy a spool file of maxMessageSizeBytes).
    if (msg.headerTooBig) return;
    if (!msg.stream) {
      msg.body!.push(chunk);
      msg.bodyBytes += chunk.length;
      if (msg.bodyBytes <= Math.min(msg.ctx.spool.memoryThresholdBytes, msg.ctx.bank.maxMessageSizeBytes)) return;
      msg.stream = new PassThrough({ highWaterMark: 256 * 1024 });
      msg.spool = spoolFrom(msg.stream, { ...msg.ctx.spool, maxSizeBytes: msg.ctx.bank.maxMessageSizeBytes, signal: msg.aborted.signal });
      // A rejected spool is answered at end of message; until then nobody awaits it.
      msg.spool.catch(() => undefined);
      chunk = Buffer.concat(msg.body!, msg.bodyBytes);
      msg.body = [];
    }
    // The spool failed (disk) or was aborted: its error is the answer at end of message; keep reading.
    if (msg.stream.destroyed) return;
    if (!msg.stream.write(chunk)) {
      // Back-pressure: stop reading from the MTA until the spool caught up, or gave up ('close'
      // without 'drain'), which would otherwise leave the connection paused until the idle timeout.
      const stream = msg.stream;
      this.socket.pause();
      const resume = () => {
        stream.off('drain', resume).off('close', resume);
        this.socket.resume();
      };
      stream.on('drain', resume).on('close', resume);
    }
  }

  private async endOfMessage(last: Buffer): Promise<void> {
    const msg = this.need('EOM');
    if (last.length) this.bodyChunk(last);
    if (!msg.body) this.startBody();
    if (msg.stream) msg.stream.end();
    else msg.spool = Promise.resolve(memorySpool(msg.body!.length === 1 ? msg.body![0] : Buffer.concat(msg.body!, msg.bodyBytes), msg.ctx.spool.headBytes));
    // msg stays referenced until the answer: without this its chunks would be held beside the spool's copy.
    msg.body = [];
    this.messages++;
    const client: ClientInfo = { ...this.client, ident: this.macros.get('i') || undefined };
    const packets = await endOfMessage({
      spool: msg.spool!,
      envelope: { ...msg.mail, recipients: msg.recipients },
      client,
      peer: this.socket.remoteAddress ?? '',
      id: `${this.id}.${this.messages}`,
      listener: this.listener,
      bankName: msg.choice?.bank ?? this.listener.bank,
      bankRule: msg.choice?.rule ?? `listener port ${this.listener.port}`,
      ctx: msg.ctx,
      headerTooBig: msg.headerTooBig,
      leadSpace: (this.protocol & Proto.HDR_LEADSPC) !== 0,
      actions: this.actions,
      aborted: msg.aborted.signal,
    });
    if (this.msg === msg) this.msg = null;
    this.write(packets);
    if (this.draining) this.socket.end();
  }

  private need(what: string): MessageState {
    if (!this.msg) throw new MilterProtocolError(`${what} outside a message (no MAIL before it)`);
    return this.msg;
  }

  /** Ends the message in progress: its spool stops and its pipeline is aborted. */
  private abortMessage(): void {
    const msg = this.msg;
    if (!msg) return;
    this.msg = null;
    msg.aborted.abort(new Error('message aborted by the MTA'));
    msg.body = null;
    msg.stream?.destroy();
  }

  /** CONTINUE unless the MTA agreed not to wait for a reply to this command. */
  private reply(noReplyFlag: number): void {
    if ((this.protocol & noReplyFlag) === 0) this.write([simpleReply(Reply.CONTINUE)]);
  }

  private write(packets: Buffer[]): void {
    if (this.closed || packets.length === 0) return;
    this.socket.write(packets.length === 1 ? packets[0] : Buffer.concat(packets));
  }

  private fail(err: unknown, what: string): void {
    if (this.closed) return;
    this.current().log.warn({ session: this.id, err: (err as Error).message, code: 'MILTER_PROTOCOL', what }, 'milter connection closed');
    this.socket.destroy();
    this.end();
  }

  private end(): void {
    if (this.closed) return;
    this.closed = true;
    this.abortMessage();
    (this.current().telemetry ?? noTelemetry).connection(-1);
    this.onClose();
  }
}
