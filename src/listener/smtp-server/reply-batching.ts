/**
 * Replies to pipelined commands leave in one write (RFC 2920 §3.1: the server may buffer
 * replies to a group of pipelined commands and send them together).
 *
 * Why: Postfix's smtp client pipelines MAIL, RCPT and DATA to the content filter in one
 * packet; smtp-server (3.21.6, pinned exactly) writes each reply as it comes, so the three go
 * out as three loopback TCP sends, each waking the Postfix process that waits for them. At
 * Postfix's pace every write is a wake-up (bench/README.md, "Per-message CPU at Postfix's
 * pace"): here the MAIL and RCPT replies wait, corked, for the reply to the last command of
 * the group that the client already sent, and all go in one write.
 *
 * How: SMTPStream#_write is wrapped to count, in each chunk read in command mode, the complete
 * command lines up to and including the first that ends a group (DATA, BDAT, QUIT, STARTTLS,
 * AUTH: the client waits for their reply, or the connection changes, before it sends more);
 * SMTPConnection#_onCommand notes how many of them are still to come after the one it
 * dispatches; SMTPConnection#send corks the socket for a reply while more are to come and
 * uncorks after the last one's reply (and after any 220, 221, 334, 354 or 421, and whenever
 * the held replies reach half the socket's high-water mark). A reply is never held past the
 * reply of a command the client has already sent, so no client waits on a held reply; it may
 * wait on the downstream's answers to the commands after it in its group, as with Postfix's
 * own smtpd.
 * Other servers in the process (the tests' sinks) are left alone unless `batchReplies` was
 * called for them.
 *
 * Refuses to install (./index.ts checks the version first) if smtp-server lacks the members
 * used here. Remove when smtp-server batches replies itself.
 */
import type { SMTPServer } from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection';
import { SMTPStream } from 'smtp-server/lib/smtp-stream';

const BATCH = Symbol('postseal reply batching');
/** Command lines received and not yet dispatched, in the current group. */
const PENDING = Symbol('postseal pipelined lines pending');
/** Lines still to come after the command being answered. */
const AFTER = Symbol('postseal lines after this command');
const CORKED = Symbol('postseal replies corked');

type Stream = SMTPStream & { [PENDING]?: number };
type Connection = SMTPConnection & { [AFTER]?: number; [CORKED]?: boolean };
type WithBatching = SMTPServer & { [BATCH]?: boolean };

/** Commands after which the client waits (or the connection changes): they end a group. */
const GROUP_END = /^(DATA|BDAT|QUIT|STARTTLS|AUTH)\b/i;
/**
 * A line that starts with a non-ASCII byte ends a group too: smtp-server upper-cases the
 * command name as UTF-8, so "ſtarttls" (U+017F) reaches its STARTTLS handler while the test
 * above, on Latin-1 bytes, would not see it.
 */
const NOT_ASCII = /[^\x00-\x7f]/;
/** Replies never held: the client waits for them, or the connection changes or ends after them. */
const NEVER_HELD = new Set([220, 221, 334, 354, 421]);

export function batchReplies(server: SMTPServer): void {
  (server as WithBatching)[BATCH] = true;
}

/**
 * Complete command lines in `remainder` (the partial line the parser kept, without a line
 * end) followed by `chunk`, up to and including the first that ends a group. Reads only the
 * first bytes of each line: a chunk that also carries message data is not converted.
 */
export function pipelinedLines(remainder: string, chunk: Buffer): number {
  let count = 0;
  let start = 0;
  for (let nl = chunk.indexOf(0x0a); nl >= 0; nl = chunk.indexOf(0x0a, start)) {
    count++;
    const head = (start === 0 ? remainder : '') + chunk.toString('latin1', start, Math.min(nl, start + 10));
    if (GROUP_END.test(head) || NOT_ASCII.test(head)) break;
    start = nl + 1;
  }
  return count;
}

/** Called once by ./index.ts, after the version gate. */
export function installReplyBatching(): void {
  const proto = SMTPConnection.prototype as Connection;
  const probe = new SMTPStream() as Stream;
  const fields = ['_remainder', '_dataMode'].filter((f) => !(f in probe));
  if (typeof SMTPStream.prototype._write !== 'function' || typeof proto._onCommand !== 'function' || typeof proto.send !== 'function' || fields.length) {
    throw new Error(
      `smtp-server lacks SMTPStream#_write, SMTPConnection#_onCommand or #send${fields.length ? `, or the stream fields ${fields.join(', ')}` : ''}: read src/listener/smtp-server/reply-batching.ts against it`,
    );
  }
  const libraryWrite = SMTPStream.prototype._write;
  const libraryOnCommand = proto._onCommand;
  const librarySend = proto.send;

  SMTPStream.prototype._write = function write(this: Stream, chunk: Buffer, encoding: BufferEncoding | 'buffer', next: (err?: Error | null) => void): void {
    // Counted for every stream (cheap); only connections of a batching server act on it.
    this[PENDING] = this._dataMode ? 0 : pipelinedLines(this._remainder, chunk);
    libraryWrite.call(this, chunk, encoding, next);
  };

  proto._onCommand = function onCommand(this: Connection, command: Buffer, callback?: () => void): void {
    const parser = this._parser as Stream | false;
    if (parser && (parser[PENDING] ?? 0) > 0) parser[PENDING]!--;
    this[AFTER] = parser ? (parser[PENDING] ?? 0) : 0;
    libraryOnCommand.call(this, command, callback);
  };

  proto.send = function send(this: Connection, code: number, data?: string | string[] | null, context?: string | false): void {
    if (!(this._server as WithBatching)[BATCH]) return librarySend.call(this, code, data, context);
    const socket = this._socket;
    // Held only while the buffer is small: smtp-server waits for 'drain' after a command once
    // the socket needs it, and a corked socket never drains, so a long pipelined group (10,000
    // NOOPs, or 1,500 refused RCPTs in one read) would stall until the idle timeout.
    const hold = (this[AFTER] ?? 0) > 0 && !NEVER_HELD.has(code) && socket.writableLength < socket.writableHighWaterMark / 2;
    if (hold && !this[CORKED]) {
      socket.cork();
      this[CORKED] = true;
    }
    librarySend.call(this, code, data, context);
    if (!hold && this[CORKED]) {
      this[CORKED] = false;
      socket.uncork();
    }
  };
}
