/**
 * A clamd client (clamd(8), "COMMANDS"), over TCP or a unix socket: `zINSTREAM` for a
 * message, `zPING` for readiness, `zVERSION` for the logs. PING and VERSION are a connection
 * each (clamd closes it after answering a command outside an IDSESSION); INSTREAM runs in an
 * IDSESSION whose connection is kept for the next message (session.ts), up to
 * `keepConnections` idle ones, or a connection each when that is 0.
 *
 * INSTREAM sends the message as received, in chunks of `chunkBytes` each behind its length
 * (4 octets, network order), then a zero length; clamd decodes MIME and archives itself. The
 * message is read from the spool as it is sent, waiting for the socket to drain, so that a
 * slow clamd never makes us hold the message in memory. More than `maxStreamBytes` is not
 * sent: clamd would refuse it past its StreamMaxLength anyway ("INSTREAM size limit
 * exceeded"), and both are the result `too-big`, for the stage to decide on.
 *
 * Every call has its own deadline (`timeoutMs`, from the connect to the last answer byte; the
 * connect alone `connectTimeoutMs`) and ends on the caller's AbortSignal by destroying the
 * socket. What goes wrong on the way is a result (ClamdFailure: unreachable, timeout, closed,
 * garbage, error), never a throw; only an abort throws, with the signal's reason.
 *
 * Hand-written (STYLE: protocol code only where a library was measured wrong): the npm
 * clients were measured against a scripted clamd on loopback (Node 20, 2026-12):
 *  - clamscan 2.4.0 `scanStream`: a clamd that stops reading left 62 MiB of a 64 MiB stream
 *    in our process after 3 s (socket writes without back-pressure) and the call never
 *    settled; a clamd that reads and never answers made the call, with timeout 1000, resolve
 *    `{ isInfected: null }` rather than fail; no AbortSignal.
 *  - clamdjs 1.0.2: TCP only (no unix socket, Debian's default), the silent clamd resolved ""
 *    rather than fail, no size limit, no AbortSignal.
 *  - clamav.js 0.12.0: callbacks, `.pipe()` without error forwarding, no timeout, no abort.
 */
import net from 'node:net';
import { failure, parsePingAnswers, parseScanAnswers, parseVersionAnswers, splitAnswers, type ClamdFailure, type ScanResult } from './reply';
import { drained } from '../drained';
import { Session, SessionPool } from './session';

export type ClamdEndpoint = { readonly socket: string } | { readonly host: string; readonly port: number };

export interface ClamdOptions {
  readonly endpoint: ClamdEndpoint;
  readonly connectTimeoutMs: number;
  /** The whole call: connect, send, answer. */
  readonly timeoutMs: number;
  /** Bytes per INSTREAM chunk. */
  readonly chunkBytes: number;
  /** At most this much of a message is sent; keep it at or under clamd's StreamMaxLength. */
  readonly maxStreamBytes: number;
  /** Idle IDSESSION connections kept for the next scans; 0: a connection per scan. */
  readonly keepConnections?: number;
}

/** clamd's answers are short; a peer that talks more is not clamd. */
const MAX_ANSWER_BYTES = 8192;
const END_OF_STREAM = Buffer.alloc(4);

type TooBig = { readonly kind: 'too-big'; readonly detail: string };
/** `complete`: the whole command (for INSTREAM the message and its end marker) went out before the answer. */
type Exchange = { readonly kind: 'answers'; readonly answers: string[]; readonly complete: boolean } | TooBig | ClamdFailure;

export class ClamdClient {
  private readonly pool: SessionPool;

  constructor(readonly options: ClamdOptions) {
    this.pool = new SessionPool(options.keepConnections ?? 0);
  }

  /** "clamd at unix:/run/clamav/clamd.ctl" or "clamd at 127.0.0.1:3310", for messages. */
  get name(): string {
    const ep = this.options.endpoint;
    return 'socket' in ep ? `clamd at unix:${ep.socket}` : `clamd at ${ep.host}:${ep.port}`;
  }

  async ping(signal?: AbortSignal): Promise<{ readonly kind: 'pong' } | ClamdFailure> {
    const x = await exchange(this.options, 'zPING\0', null, signal);
    return x.kind === 'answers' ? parsePingAnswers(x.answers) : asFailure(x);
  }

  /**
   * PING inside an IDSESSION, as the kept connections use it: "1: PONG". A scanner that speaks
   * clamd's commands but not sessions answers otherwise, and every scan with keepConnections
   * above 0 would fail on it (the start-up check says so, stages/virus/probe.ts).
   */
  async pingInSession(signal?: AbortSignal): Promise<{ readonly kind: 'pong' } | ClamdFailure> {
    const x = await exchange(this.options, 'zIDSESSION\0zPING\0zEND\0', null, signal);
    if (x.kind !== 'answers') return asFailure(x);
    return x.answers.length === 1 && x.answers[0] === '1: PONG' ? { kind: 'pong' } : failure('garbage', `PING in a session answered: ${x.answers.join(' | ') || 'nothing'}`);
  }

  async version(signal?: AbortSignal): Promise<{ readonly kind: 'version'; readonly version: string } | ClamdFailure> {
    const x = await exchange(this.options, 'zVERSION\0', null, signal);
    return x.kind === 'answers' ? parseVersionAnswers(x.answers) : asFailure(x);
  }

  /**
   * Scans a message; `open` gives its bytes, read as they are sent. It is called a second time
   * only when a kept connection turned out closed before the message went out (scanInSession).
   */
  async scan(open: () => AsyncIterable<Buffer>, signal?: AbortSignal): Promise<ScanResult> {
    signal?.throwIfAborted();
    if (!this.options.keepConnections) {
      const x = await exchange(this.options, 'zINSTREAM\0', open(), signal);
      if (x.kind !== 'answers') return x;
      const result = parseScanAnswers(x.answers);
      return result.kind === 'clean' && !x.complete ? failure('garbage', 'clamd said clean before the end of the message') : result;
    }
    // One deadline for the call, a retry on a new connection included.
    const deadline = performance.now() + this.options.timeoutMs;
    const kept = this.pool.take();
    let x = await scanInSession(this.options, kept, open(), deadline, signal);
    if (x.kind === 'stale') x = await scanInSession(this.options, null, open(), deadline, signal);
    if (x.kind !== 'answer') return x.kind === 'stale' ? failure('closed', 'closed the connection without an answer') : x;
    const result = parseScanAnswers([x.text]);
    // A clean answer before the whole message was sent is no answer about the message.
    if (result.kind === 'clean' && !x.complete) {
      x.session.destroy();
      return failure('garbage', 'clamd said clean before the end of the message');
    }
    // Only a clean answer leaves the session ready: after a virus or an error the connection is closed.
    if (result.kind === 'clean') this.pool.give(x.session);
    else x.session.destroy();
    return result;
  }

  /** Ends the kept connections (configuration reload, shutdown). */
  close(): void {
    this.pool.close();
  }
}

type SessionScan = { readonly kind: 'answer'; readonly text: string; readonly session: Session; readonly complete: boolean } | { readonly kind: 'stale' } | TooBig | ClamdFailure;

/**
 * One INSTREAM in a session: a kept one (`kept`) or a new one. `stale` when a kept connection
 * was closed (by clamd, or a clamd restart) before the message's end marker went out and
 * before any answer, for the caller to try once on a new one; a close after that (clamd
 * crashing on the file, its ReadTimeout) is a failure, not tried again. `deadline` is the
 * call's (performance.now() time): connect, send, answer and a retry all fit in timeoutMs.
 */
async function scanInSession(o: ClamdOptions, kept: Session | null, body: AsyncIterable<Buffer>, deadline: number, signal?: AbortSignal): Promise<SessionScan> {
  const left = () => Math.max(0, deadline - performance.now());
  let session = kept;
  if (!session) {
    const opened = await Session.open(connectTo(o.endpoint), Math.min(o.connectTimeoutMs, left()), signal);
    if (!(opened instanceof Session)) {
      signal?.throwIfAborted();
      return opened;
    }
    if (signal?.aborted) {
      opened.destroy();
      signal.throwIfAborted();
    }
    session = opened;
  }
  const s = session;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    s.destroy();
  }, left());
  const onAbort = () => s.destroy();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const id = s.take();
    const sent = await send(s.socket, Buffer.from('zINSTREAM\0', 'latin1'), body, o, () => s.answered, signal);
    if (typeof sent === 'object') {
      s.destroy();
      return sent;
    }
    const a = await s.answer(id);
    signal?.throwIfAborted();
    if (timedOut) return failure('timeout', `no complete answer within ${o.timeoutMs} ms`);
    if (a.kind === 'answer') return { kind: 'answer', text: a.text, session: s, complete: sent };
    s.destroy();
    if (a.kind === 'failed') return a;
    if (kept && !sent) return { kind: 'stale' };
    const code = a.error?.code;
    const hint = code === 'EPIPE' || code === 'ECONNRESET' ? '; clamd cut the stream, most likely at its StreamMaxLength: keep virus.maxScanBytes at or below it' : '';
    return failure('closed', `closed the connection without an answer${a.error ? ` (${code ?? a.error.message})` : ''}${hint}`);
  } catch (err) {
    // The spool read failed (or an abort): the connection goes with it, never back to the pool.
    s.destroy();
    throw err;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}

function asFailure(x: Exclude<Exchange, { kind: 'answers' }>): ClamdFailure {
  return x.kind === 'failed' ? x : failure('garbage', `unexpected ${x.kind}`);
}

function connectTo(ep: ClamdEndpoint): net.Socket {
  if ('socket' in ep) return net.connect({ path: ep.socket });
  const s = net.connect({ host: ep.host, port: ep.port });
  s.setNoDelay(true);
  return s;
}

/**
 * One command on a new connection: connect, send the command (and the stream), collect what
 * clamd sends until it closes. A clamd that answers while we still send (a size limit) is
 * heard: the answer is kept and the sending stops.
 */
async function exchange(o: ClamdOptions, command: string, body: AsyncIterable<Buffer> | null, signal?: AbortSignal): Promise<Exchange> {
  signal?.throwIfAborted();
  const socket = connectTo(o.endpoint);
  const received: Buffer[] = [];
  let receivedBytes = 0;
  let overflow = false;
  let connected = false;
  let socketError: NodeJS.ErrnoException | undefined;
  let failed: ClamdFailure | undefined;
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const connecting = new Promise<void>((resolve) => {
    socket.once('connect', () => {
      connected = true;
      resolve();
    });
    socket.once('close', () => resolve());
  });
  socket.on('data', (d: Buffer) => {
    receivedBytes += d.length;
    if (receivedBytes > MAX_ANSWER_BYTES) {
      overflow = true;
      socket.destroy();
    } else received.push(d);
  });
  // EPIPE/ECONNRESET after clamd answered early are expected; the answer decides.
  socket.on('error', (err: NodeJS.ErrnoException) => (socketError ??= err));
  const giveUp = (why: ClamdFailure) => {
    failed ??= why;
    socket.destroy();
  };
  const callTimer = setTimeout(() => giveUp(failure('timeout', `no complete answer within ${o.timeoutMs} ms`)), o.timeoutMs);
  const connectTimer = setTimeout(() => connected || giveUp(failure('timeout', `no connection within ${o.connectTimeoutMs} ms`)), o.connectTimeoutMs);
  const onAbort = () => socket.destroy();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await connecting;
    signal?.throwIfAborted();
    if (failed) return failed;
    if (!connected) return failure('unreachable', `cannot connect: ${socketError?.code ?? socketError?.message ?? 'closed'}`);
    const sent = await send(socket, Buffer.from(command, 'latin1'), body, o, () => received.length > 0, signal);
    if (typeof sent === 'object') return sent;
    await closed;
    signal?.throwIfAborted();
    if (failed) return failed;
    if (overflow) return failure('garbage', `answer longer than ${MAX_ANSWER_BYTES} bytes`);
    const answers = splitAnswers(Buffer.concat(received));
    if (!answers.length) {
      // clamd closing with our chunks unread makes its kernel reset the connection, which can
      // discard its "size limit exceeded" answer before we read it: say what it most likely was.
      const cut = body && (socketError?.code === 'EPIPE' || socketError?.code === 'ECONNRESET');
      const hint = cut ? '; clamd cut the stream, most likely at its StreamMaxLength: keep virus.maxScanBytes at or below it' : '';
      return failure('closed', `closed the connection without an answer${socketError ? ` (${socketError.code ?? socketError.message})` : ''}${hint}`);
    }
    return { kind: 'answers', answers, complete: sent };
  } finally {
    clearTimeout(callTimer);
    clearTimeout(connectTimer);
    signal?.removeEventListener('abort', onAbort);
    socket.destroy();
  }
}

/**
 * Sends the command, then for INSTREAM the chunks and the end marker: true when all of it went
 * out, false when it stopped early (clamd answered or closed, an abort); `too-big` (and nothing
 * more sent) past maxStreamBytes. The socket stays corked while the kernel takes more, so a
 * message that fits the socket buffer leaves in one writev rather than a write per chunk,
 * length and marker (each its own syscall: 4-6 % of the content path's CPU, bench profile).
 */
async function send(
  socket: net.Socket,
  command: Buffer,
  body: AsyncIterable<Buffer> | null,
  o: ClamdOptions,
  answered: () => boolean,
  signal?: AbortSignal,
): Promise<TooBig | boolean> {
  if (socket.destroyed) return false;
  let corked = true;
  socket.cork();
  try {
    socket.write(command);
    if (!body) return true;
    let sent = 0;
    for await (const buf of body) {
      // Gone: clamd answered early (its size limit), timed out, or the caller aborted. Leaving the loop closes the spool reader.
      if (socket.destroyed || signal?.aborted || answered()) return false;
      for (let at = 0; at < buf.length; at += o.chunkBytes) {
        const part = buf.subarray(at, at + o.chunkBytes);
        sent += part.length;
        if (sent > o.maxStreamBytes) return { kind: 'too-big', detail: `over maxStreamBytes (${o.maxStreamBytes} bytes)` };
        const length = Buffer.allocUnsafe(4);
        length.writeUInt32BE(part.length);
        socket.write(length);
        socket.write(part);
        if (socket.writableNeedDrain) {
          // Over the high-water mark: let it go and wait, so a slow clamd never makes us hold the message.
          socket.uncork();
          corked = false;
          await drained(socket);
          if (socket.destroyed || answered()) return false;
          socket.cork();
          corked = true;
        }
      }
    }
    socket.write(END_OF_STREAM);
    return true;
  } finally {
    if (corked && !socket.destroyed) socket.uncork();
  }
}
