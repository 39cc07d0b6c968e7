/**
 * clamd sessions (clamd(8), IDSESSION and END) for INSTREAM: a scan takes an idle connection
 * of an earlier scan instead of connecting, and the connection outlives the answer. A message
 * then costs no socket set-up, connect and close on our side, nor an accept and a thread
 * hand-off on clamd's (bench profile: connect and close were 6 % of the content path's CPU).
 *
 * Inside a session every answer is "<id>: <answer>" with the NUL of the z-prefixed command,
 * <id> counting commands from 1, and one command is out at a time. A connection goes back to
 * the pool only after a single clean answer to the command it just sent: after a virus or an
 * error (a size limit ends the session on clamd's side) it is closed, never read by the next
 * scan. An answer with another id, or a second answer to one command, is garbage, never this
 * message's result.
 *
 * clamd watches a session's connection while it scans: it closes one that sent nothing for
 * its ReadTimeout (120 s by default), idle or waiting for a long scan (docs: keep
 * virus.timeoutMs below it). Pooled connections are dropped after IDLE_MS, well before; a
 * reused one closed before the message went out is tried once more on a new connection
 * (client.ts), the scan read again from the spool, so nothing is lost and nothing is taken
 * for an answer.
 */
import type net from 'node:net';
import { failure, type ClamdFailure } from './reply';

/** Well below clamd's default ReadTimeout (120 s), so that clamd rarely closes one under us. */
const IDLE_MS = 10_000;
/** clamd's answers are short; a peer that talks more is not clamd. */
const MAX_ANSWER_BYTES = 8192;

export type SessionAnswer = { readonly kind: 'answer'; readonly text: string } | { readonly kind: 'closed'; readonly error?: NodeJS.ErrnoException } | ClamdFailure;

/** One IDSESSION connection: a command at a time, its answer by id. */
export class Session {
  private received: Buffer[] = [];
  private receivedBytes = 0;
  private nextId = 1;
  private waiting: ((a: SessionAnswer) => void) | null = null;
  private error: NodeJS.ErrnoException | undefined;
  /** Answers of earlier commands still to come (AllMatchScan), or a peer that is not clamd. */
  private broken: string | null = null;
  closed = false;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', (err: NodeJS.ErrnoException) => (this.error ??= err));
    socket.on('close', () => {
      this.closed = true;
      this.settle({ kind: 'closed', error: this.error });
    });
    // Idle in the pool: clamd would close it soon; we do first (and a pooled socket never keeps the process up).
    socket.on('timeout', () => this.end());
  }

  /** Connects and starts the session (IDSESSION has no answer of its own). */
  static open(socket: net.Socket, connectTimeoutMs: number, signal?: AbortSignal): Promise<Session | ClamdFailure> {
    return new Promise((resolve) => {
      let error: NodeJS.ErrnoException | undefined;
      const done = (r: Session | ClamdFailure) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        socket.off('error', onError);
        socket.off('close', onClose);
        if ('kind' in r) socket.destroy();
        resolve(r);
      };
      const onError = (err: NodeJS.ErrnoException) => (error ??= err);
      const onClose = () => done(failure('unreachable', `cannot connect: ${error?.code ?? error?.message ?? 'closed'}`));
      const onAbort = () => done(failure('closed', 'aborted while connecting'));
      const timer = setTimeout(() => done(failure('timeout', `no connection within ${connectTimeoutMs} ms`)), connectTimeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      socket.on('error', onError);
      socket.once('close', onClose);
      socket.once('connect', () => {
        const session = new Session(socket);
        socket.write('zIDSESSION\0');
        done(session);
      });
    });
  }

  /** The id the next command gets; call once per command, before sending it. */
  take(): number {
    return this.nextId++;
  }

  /** Whether an answer has started to come (clamd answered while we still send: a size limit). */
  get answered(): boolean {
    return this.receivedBytes > 0;
  }

  /** The answer to command `id`; never resolves twice, never throws. */
  answer(id: number): Promise<SessionAnswer> {
    return new Promise((resolve) => {
      this.waiting = (a) => {
        if (a.kind !== 'answer') return resolve(a);
        const m = /^(\d+): (.*)$/s.exec(a.text);
        if (m && Number(m[1]) === id) return resolve({ kind: 'answer', text: m[2].replace(/\r?\n$/, '') });
        this.broken = 'an answer to another command';
        resolve(failure('garbage', `clamd answered command ${id} with: ${a.text}`));
      };
      // An answer that came before we asked (clamd answering while we still sent) is read first.
      this.deliver();
      if (this.closed) this.settle({ kind: 'closed', error: this.error });
    });
  }

  /** Whether the connection can serve another scan. */
  get reusable(): boolean {
    return !this.closed && this.broken === null && this.receivedBytes === 0;
  }

  /** Into the pool: an idle timer, and no hold on the process. */
  park(): void {
    this.socket.setTimeout(IDLE_MS);
    this.socket.unref();
  }

  /** Out of the pool, for one command. */
  unpark(): void {
    this.socket.setTimeout(0);
    this.socket.ref();
  }

  /** Ends the session politely (END), then the connection. */
  end(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.end('zEND\0');
    this.socket.destroySoon();
  }

  destroy(): void {
    this.closed = true;
    this.socket.destroy();
  }

  private onData(d: Buffer): void {
    this.receivedBytes += d.length;
    if (this.receivedBytes > MAX_ANSWER_BYTES) {
      this.broken = 'answer too long';
      this.settle(failure('garbage', `answer longer than ${MAX_ANSWER_BYTES} bytes`));
      this.destroy();
      return;
    }
    this.received.push(d);
    if (!this.waiting) {
      // Not asked yet: clamd answered while we still send (a size limit), or talks unasked.
      // The answer is read when asked for, by id, and the connection is not used again.
      this.broken = 'an answer before its command ended';
      return;
    }
    this.deliver();
  }

  /** Hands the first complete (NUL-ended) answer to the waiting command. */
  private deliver(): void {
    if (!this.waiting || !this.received.length) return;
    const all = Buffer.concat(this.received);
    const end = all.indexOf(0);
    if (end < 0) {
      this.received = [all];
      return;
    }
    const rest = all.subarray(end + 1);
    this.received = rest.length ? [rest] : [];
    this.receivedBytes = rest.length;
    if (rest.length) {
      // A second answer to one command ("OK" then "FOUND"): neither can be trusted.
      this.broken = 'more answers than one';
      this.settle(failure('garbage', `clamd sent more than one answer: ${all.toString('latin1').replace(/\0/g, ' | ')}`));
      return;
    }
    this.settle({ kind: 'answer', text: all.subarray(0, end).toString('latin1') });
  }

  private settle(a: SessionAnswer): void {
    const w = this.waiting;
    this.waiting = null;
    w?.(a);
  }
}

/** Idle sessions of one clamd, most recently used first. */
export class SessionPool {
  private readonly idle: Session[] = [];

  constructor(private readonly max: number) {}

  /** An idle session still open, or null. */
  take(): Session | null {
    while (this.idle.length) {
      const s = this.idle.pop()!;
      if (s.reusable) {
        s.unpark();
        return s;
      }
      s.destroy();
    }
    return null;
  }

  /** Back into the pool when it can serve again and there is room; ended otherwise. */
  give(s: Session): void {
    if (!s.reusable || this.idle.length >= this.max) {
      s.end();
      return;
    }
    s.park();
    this.idle.push(s);
  }

  /** Ends every idle session (shutdown, tests). */
  close(): void {
    for (const s of this.idle.splice(0)) s.end();
  }
}
