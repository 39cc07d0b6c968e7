/**
 * The SMTP session, in step with the downstream: each RCPT is passed on as it comes and the
 * downstream's reply is mirrored; at end of DATA the message is spooled, the bank's pipeline
 * runs, and only then is DATA sent downstream (deliver.ts). The upstream never hears 250 for
 * a message the downstream has not accepted.
 *
 * MAIL is checked here (syntax, bank) and answered at once; it goes downstream with the
 * first RCPT, in one write (RFC 2920 PIPELINING), which saves a round trip to the downstream
 * per message. A downstream that refuses MAIL (or cannot be reached) has its answer given to
 * that RCPT and to every later one of the transaction: each recipient is refused or deferred
 * with the downstream's own code and text, as Postfix's smtp client would treat a refused
 * MAIL. A transaction with no RCPT never opens a downstream one.
 */
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { SMTPServerDataResult, SMTPServerSession } from 'smtp-server';
import type { Bank } from '../config/bank-schema';
import type { ListenerConfig } from '../config/main-schema';
import type { MailCommand, RcptCommand, Refusal } from '../lib/envelope/commands';
import { errorFields } from '../lib/log';
import type { BankChoice, BankChooser } from '../config/bank-rules';
import type { NetworkList } from '../config/networks';
import { countDownstreamFailure, noTelemetry, type Telemetry } from '../lib/telemetry';
import type { Pipeline } from '../pipeline/runner';
import type { BounceDeps } from '../notify/bounce';
import type { Quarantine } from '../quarantine/quarantine';
import { DownstreamTransaction, type Opened } from '../reinject/downstream-transaction';
import type { DownstreamPool } from '../reinject/pool';
import type { DownstreamReply } from '../reinject/smtp-client';
import { isSuccess, mirrorReply, replyLine } from '../reinject/reply-map';
import { replyForError } from '../smtp/error-replies';
import { PostsealError } from '../errors';
import { replyError, replies, type SmtpReply, type SmtpReplyError } from '../smtp/replies';
import type { SpoolOptions } from '../transaction/spool';
import type { ClientInfo, Envelope, Recipient } from '../transaction/transaction';
import { deliver } from './deliver';

/**
 * The client attributes sent downstream in XFORWARD. On a bank that signs (`originating`),
 * SOURCE is REMOTE whatever Postfix said, also when it said nothing: Postfix's smtp client
 * says SOURCE=LOCAL for mail from a local client (permit_inet_interfaces, so every message
 * a webmail or `sendmail` on the host submits), and a reinjection smtpd that hears it has
 * cleanup rewrite header addresses in the local context (masquerade_domains, canonical_maps,
 * $myorigin appended, a From or To refolded), overriding its own local_header_rewrite_clients:
 * after the signature was made, so it breaks. Those rewrites happened on the way in already,
 * or belong there (docs/signing.md, "Postfix after signing").
 */
export function forwardedClient(client: ClientInfo | null, bank: Pick<Bank, 'originating'>): ClientInfo | null {
  return bank.originating ? { ...client, source: 'REMOTE' } : client;
}

/** The downstream transaction of this session is gone (it failed at an earlier command). */
const LOST = new PostsealError('REINJECT_PROTOCOL', 'downstream transaction lost');

/** What a transaction runs with; a reload swaps it between transactions, never during one. */
export interface SessionContext {
  readonly bank: Bank;
  readonly hostname: string;
  readonly log: Logger;
  readonly trustedNetworks: NetworkList;
  readonly pool: DownstreamPool;
  readonly pipeline: Pipeline;
  readonly spool: Omit<SpoolOptions, 'maxSizeBytes'>;
  readonly shutdownGraceMs: number;
  /** Metrics hooks (lib/telemetry.ts); none when absent. */
  readonly telemetry?: Telemetry;
  /** Banks by client network and sender (config/bank-rules.ts); absent: the port's bank only. */
  readonly bankChooser?: BankChooser;
  /** The context of another bank of the same configuration, for the bank rules. */
  readonly contextOf?: (bank: string) => SessionContext | undefined;
  /** Where a quarantine verdict holds the message; without it such a message is tempfailed. */
  readonly quarantine?: Quarantine;
  /** The bank's notify target and the store, for a bounce verdict's DSN; without it such a message is tempfailed. */
  readonly bounce?: BounceDeps;
}

interface SessionState {
  readonly peer: string;
  transactions: number;
  ctx: SessionContext | null;
  /** How the transaction's bank was chosen (config/bank-rules.ts). */
  choice: BankChoice | null;
  client: ClientInfo | null;
  down: DownstreamTransaction | null;
  /** The answer every RCPT of this transaction gets: the downstream refused its MAIL, or broke. */
  refusal: SmtpReplyError | null;
  envelope: { mail: Omit<Envelope, 'recipients'>; recipients: Recipient[] } | null;
  busy: Promise<void> | null;
  /** Aborted when the client disconnects: a message not yet sent downstream is not sent. */
  readonly gone: AbortController;
  /** Counted as an open connection (telemetry) by open(). */
  counted: boolean;
}

export class SessionHandler {
  draining = false;
  private sessions = new Map<string, SessionState>();

  constructor(
    private readonly listener: ListenerConfig,
    private readonly current: () => SessionContext,
  ) {}

  open(session: SMTPServerSession): void {
    const state = newState(session);
    state.counted = true;
    this.sessions.set(session.id, state);
    (this.current().telemetry ?? noTelemetry).connection(1);
  }

  busy(sessionId: string): boolean {
    const s = this.sessions.get(sessionId);
    return !!s && (s.down !== null || s.envelope !== null || s.busy !== null);
  }

  /** Resolves when no message is between end of DATA and its reply. */
  async idle(): Promise<void> {
    await Promise.all([...this.sessions.values()].map((s) => s.busy));
  }

  /** MAIL: the bank is chosen and the sender kept; it goes downstream with the first RCPT. */
  async mailFrom(cmd: MailCommand, session: SMTPServerSession): Promise<SmtpReply> {
    const state = this.state(session);
    state.down?.abort();
    state.down = null;
    state.refusal = null;
    const portCtx = this.current();
    const client = (state.client = this.clientInfo(session, state, portCtx));
    // The whole transaction, its downstream MAIL included, runs on the chosen bank.
    state.ctx = this.chooseBank(portCtx, state, client, cmd.address);
    state.envelope = { mail: { mailFrom: cmd.address, smtputf8: cmd.smtputf8, body: cmd.body, ret: cmd.ret, envid: cmd.envid }, recipients: [] };
    return replies.senderAccepted;
  }

  async rcptTo(cmd: RcptCommand, session: SMTPServerSession): Promise<SmtpReply> {
    const state = this.state(session);
    const { envelope, ctx } = state;
    if (!envelope || !ctx) throw replyError(replyForError(LOST));
    if (state.refusal) throw state.refusal;
    if (envelope.recipients.length >= ctx.bank.maxRecipients) throw replyError(replies.tooManyRecipients);
    const rcpt: Recipient = cmd;
    let reply: DownstreamReply;
    if (!state.down) {
      if (envelope.recipients.length > 0) throw replyError(replyForError(LOST));
      let opened: Opened;
      try {
        opened = await DownstreamTransaction.begin(ctx.pool, envelope.mail, forwardedClient(state.client, ctx.bank), rcpt);
      } catch (err) {
        ctx.log.warn({ ...this.lineFields(session, state, ctx), ...errorFields(err) }, 'downstream MAIL failed');
        countDownstreamFailure(ctx.telemetry, err, 'MAIL');
        throw (state.refusal = replyError(replyForError(err)));
      }
      // The session may have ended, or a new MAIL begun, while the downstream answered.
      if (state.gone.signal.aborted || state.envelope !== envelope) {
        opened.tx?.abort();
        throw replyError(replyForError(LOST));
      }
      if (!opened.tx) {
        // Postfix logs this reply as the answer to RCPT: say here that it was MAIL's.
        ctx.log.warn(
          {
            ...this.lineFields(session, state, ctx),
            reply: replyLine(opened.reply),
          },
          'the downstream refused MAIL: every recipient of this transaction gets its reply',
        );
        throw (state.refusal = mirrored(opened.reply));
      }
      if (!opened.rcpt) {
        opened.tx.abort();
        throw replyError(replyForError(LOST));
      }
      state.down = opened.tx;
      reply = opened.rcpt;
    } else {
      try {
        reply = await state.down.rcpt(rcpt);
      } catch (err) {
        state.down = null;
        ctx.log.warn({ ...this.lineFields(session, state, ctx), ...errorFields(err) }, 'downstream RCPT failed');
        countDownstreamFailure(ctx.telemetry, err, 'RCPT');
        throw (state.refusal = replyError(replyForError(err)));
      }
    }
    if (!isSuccess(reply)) throw mirrored(reply);
    envelope.recipients.push(rcpt);
    return mirrorReply(reply);
  }

  /** A MAIL or RCPT this listener refused itself (lib/envelope/commands.ts). */
  refused(verb: 'MAIL' | 'RCPT', refusal: Refusal, line: string, session: SMTPServerSession): void {
    const state = this.state(session);
    const ctx = state.ctx ?? this.current();
    ctx.log.warn({ ...this.lineFields(session, state, ctx), command: line.slice(0, 600), reply: refusal.refused, detail: refusal.detail }, `${verb} refused`);
  }

  async data(stream: Readable, session: SMTPServerSession): Promise<string | SMTPServerDataResult[]> {
    const state = this.state(session);
    const { down, envelope, ctx, choice, client } = state;
    state.down = null;
    state.envelope = null;
    if (!down || !envelope || !ctx) {
      stream.resume();
      throw replyError(replyForError(LOST));
    }
    state.transactions++;
    const run = deliver({
      stream,
      down,
      envelope: { ...envelope.mail, recipients: envelope.recipients },
      client: client ?? {},
      peer: state.peer,
      id: `${session.id}.${state.transactions}`,
      listener: this.listener,
      bankName: choice?.bank ?? this.listener.bank,
      bankRule: choice?.rule ?? `listener port ${this.listener.port}`,
      tls: session.tlsOptions ? session.tlsOptions.version : null,
      ctx,
      upstream: state.gone.signal,
    });
    state.busy = run.then(
      () => undefined,
      () => undefined,
    );
    try {
      return await run;
    } finally {
      state.busy = null;
    }
  }

  close(session: SMTPServerSession): void {
    const state = this.sessions.get(session.id);
    state?.down?.abort();
    state?.gone.abort();
    if (state?.counted) (this.current().telemetry ?? noTelemetry).connection(-1);
    this.sessions.delete(session.id);
  }

  private state(session: SMTPServerSession): SessionState {
    let s = this.sessions.get(session.id);
    if (!s) {
      s = newState(session);
      this.sessions.set(session.id, s);
    }
    return s;
  }

  /**
   * The bank rules (main config bankRules) for this transaction: the client address is
   * XFORWARD's ADDR when believed, else the peer's own.
   */
  private chooseBank(portCtx: SessionContext, state: SessionState, client: ClientInfo | null, sender: string): SessionContext {
    state.choice = null;
    if (!portCtx.bankChooser || !portCtx.contextOf) return portCtx;
    const choice = portCtx.bankChooser.choose(this.listener, clientAddress(client, state.peer, portCtx.trustedNetworks), sender);
    const ctx = portCtx.contextOf(choice.bank);
    // config/load.ts loads every bank a rule names; a missing one keeps the port's bank.
    if (!ctx) return portCtx;
    state.choice = choice;
    return ctx;
  }

  /**
   * What every per-message line carries besides the bank (the bank's logger has it), so one
   * grep joins postseal's lines to Postfix's: the session and Postfix's queue id (XFORWARD
   * IDENT, sent before MAIL; only from a trusted peer, and absent when Postfix sends none).
   */
  private lineFields(session: SMTPServerSession, state: SessionState, ctx: SessionContext): Record<string, unknown> {
    const ident = ctx.trustedNetworks.contains(state.peer) ? session.xForward?.get('IDENT') : undefined;
    return { session: session.id, queueId: typeof ident === 'string' && ident !== '' ? ident : undefined };
  }

  /** XFORWARD attributes, believed only from trusted peers (the socket's own address decides). */
  private clientInfo(session: SMTPServerSession, state: SessionState, ctx: SessionContext): ClientInfo | null {
    const xf = session.xForward;
    if (!xf || xf.size === 0) return null;
    if (!ctx.trustedNetworks.contains(state.peer)) {
      ctx.log.warn({ session: session.id, peer: state.peer }, 'XFORWARD from an untrusted peer ignored');
      return null;
    }
    const get = (k: string) => {
      const v = xf.get(k);
      // smtp-server turns [UNAVAILABLE] into false, or into '' for NAME and HELO.
      return v === undefined ? undefined : v === false || v === '' ? '[UNAVAILABLE]' : String(v);
    };
    return { name: get('NAME'), addr: get('ADDR'), port: get('PORT'), proto: get('PROTO'), helo: get('HELO'), ident: get('IDENT'), source: get('SOURCE') };
  }
}

function newState(session: SMTPServerSession): SessionState {
  return {
    peer: session.remoteAddress,
    transactions: 0,
    ctx: null,
    choice: null,
    client: null,
    down: null,
    refusal: null,
    envelope: null,
    busy: null,
    gone: new AbortController(),
    counted: false,
  };
}

/** Postfix writes an IPv6 ADDR with an IPv6: prefix; [UNAVAILABLE] falls back to the peer. */
/**
 * The client the network rules judge: XFORWARD's ADDR when believed; else the peer, unless the
 * peer is a trusted hop (Postfix on loopback), which only relays for the real client: then it is
 * unknown and no network rule applies (127.0.0.0/8 in a rule would otherwise take every message).
 */
function clientAddress(client: ClientInfo | null, peer: string, trusted: NetworkList): string | undefined {
  const addr = client?.addr?.replace(/^ipv6:/i, '');
  if (addr && !addr.startsWith('[')) return addr;
  return trusted.contains(peer) ? undefined : peer;
}

function mirrored(reply: Parameters<typeof mirrorReply>[0]): SmtpReplyError {
  return replyError(mirrorReply(reply));
}
