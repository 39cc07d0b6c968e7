/**
 * A client of SpamAssassin's spamd: the SPAMC/1.5 protocol (spamd's PROTOCOL file, as
 * Debian's spamd 4.0 speaks it) over TCP or a unix socket, one connection per call, as spamc
 * does. `check` sends SYMBOLS or REPORT with Content-length (and User when set), streams the
 * message from the spool (never buffered whole), and reads the `Spam: True ; 15.0 / 5.0`
 * header plus the symbol names (SYMBOLS) or the report's points table (REPORT, which gives
 * each rule's score). `ping` sends PING and expects PONG.
 *
 * Hand-written: the one npm client, `spamc` 0.0.5, was measured against Debian's spamd 4.0.1
 * (2026-12-07, GTUBE with three Latin-1 body bytes, 89 bytes): it takes the message as a string,
 * so the bytes had to be decoded first and it sent 97 (each Latin-1 byte became U+FFFD, and it
 * appends a CRLF): spamd scanned another message than Postfix holds. Its `symbols()` answered
 * score 1000 with no rule names at all. It also buffers the whole message, decodes each TCP
 * chunk to a string on its own, has only an idle timeout and no abort, no unix sockets, no cap
 * on the answer, and callbacks that can fire twice. The protocol is a request line, two
 * headers and the message.
 *
 * Fails with SPAM_SCANNER_FAILED: refused or lost connection, no complete answer within
 * `timeoutMs`, an answer over `maxReplyBytes`, an error code from spamd (EX_* other than 0),
 * or an answer that is not SPAMD/1.x with a Spam header. Aborting `signal` destroys the socket.
 */
import net from 'node:net';
import { PostsealError } from '../../errors';
import { drained } from '../drained';

export interface SpamdEndpoint {
  /** A unix socket path; when set, host and port are not used. */
  readonly socket?: string;
  readonly host: string;
  readonly port: number;
}

export interface SpamdOptions extends SpamdEndpoint {
  /** The whole call: connect, send, answer. */
  readonly timeoutMs: number;
  /** REPORT gives each rule's points; SYMBOLS only the rule names (a shorter answer). */
  readonly command: 'SYMBOLS' | 'REPORT';
  /** spamd's User header (per-user preferences); none when empty. */
  readonly user?: string;
  /** Larger answers are refused (a REPORT holds a content preview and one line per rule). */
  readonly maxReplyBytes?: number;
}

/** The message to scan: its exact size (Content-length) and its bytes as a stream. */
export interface ScanSource {
  readonly size: number;
  open(): AsyncIterable<Buffer>;
}

export interface SpamSymbol {
  readonly name: string;
  /** The rule's points; undefined when the answer did not give them (SYMBOLS). */
  readonly score?: number;
}

export interface SpamdResult {
  readonly isSpam: boolean;
  readonly score: number;
  /** spamd's own required_score. */
  readonly required: number;
  readonly symbols: readonly SpamSymbol[];
}

const DEFAULT_MAX_REPLY = 1024 * 1024;
/** A rule name as SpamAssassin allows them; anything else in an answer is dropped, not echoed. */
export const SYMBOL_NAME = /^[A-Za-z0-9_.:-]{1,100}$/;
/** More rules than this on one message are not listed (the header field would grow without end). */
export const MAX_SYMBOLS = 200;

const fail = (why: string, cause?: unknown) => new PostsealError('SPAM_SCANNER_FAILED', `spamd: ${why}`, { cause });

export function describeEndpoint(e: SpamdEndpoint): string {
  return e.socket ? `unix:${e.socket}` : `${e.host}:${e.port}`;
}

export async function spamdCheck(opts: SpamdOptions, source: ScanSource, signal?: AbortSignal): Promise<SpamdResult> {
  const head = [`${opts.command} SPAMC/1.5`, `Content-length: ${source.size}`];
  if (opts.user) head.push(`User: ${opts.user.replace(/[^\x21-\x7e]/g, '')}`);
  const reply = await exchange(opts, `${head.join('\r\n')}\r\n\r\n`, source, signal);
  return parseCheckReply(reply, opts.command);
}

export async function spamdPing(endpoint: SpamdEndpoint, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  const reply = await exchange({ ...endpoint, timeoutMs, maxReplyBytes: 4096 }, 'PING SPAMC/1.5\r\n\r\n', undefined, signal);
  const line = reply.toString('latin1').split('\r\n', 1)[0];
  if (!/^SPAMD\/1\.\d+ 0 PONG$/.test(line)) throw fail(`answered PING with ${JSON.stringify(line.slice(0, 80))}`);
}

/**
 * One connection: the request, the message (with back-pressure), then everything spamd says
 * until it closes the connection (it always does after one answer). Bounded by time and size.
 */
function exchange(opts: SpamdEndpoint & { timeoutMs: number; maxReplyBytes?: number }, head: string, source: ScanSource | undefined, signal?: AbortSignal): Promise<Buffer> {
  const max = opts.maxReplyBytes ?? DEFAULT_MAX_REPLY;
  return new Promise<Buffer>((resolve, reject) => {
    if (signal?.aborted) return reject(fail('aborted before connecting', signal.reason));
    const socket = opts.socket ? net.connect({ path: opts.socket }) : net.connect({ host: opts.host, port: opts.port });
    const chunks: Buffer[] = [];
    let got = 0;
    let settled = false;
    const finish = (err: Error | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      if (err) reject(err);
      else resolve(Buffer.concat(chunks, got));
    };
    const onAbort = () => finish(fail('aborted', signal?.reason));
    const timer = setTimeout(() => finish(fail(`no complete answer from ${describeEndpoint(opts)} within ${opts.timeoutMs} ms`)), opts.timeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.on('error', (err: NodeJS.ErrnoException) => finish(fail(`${describeEndpoint(opts)}: ${err.code ?? err.message}`, err)));
    socket.on('data', (d: Buffer) => {
      got += d.length;
      if (got > max) return finish(fail(`answer longer than ${max} bytes`));
      chunks.push(d);
    });
    socket.on('end', () => finish(null));
    socket.once('connect', () => {
      send(socket, head, source).catch((err) => finish(settled ? null : fail(`sending the message: ${(err as Error).message}`, err)));
    });
  });
}

/**
 * The request head and the message, corked while the kernel takes more: a message that fits
 * the socket buffer leaves in one writev, not a write per piece (each its own syscall).
 */
async function send(socket: net.Socket, head: string, source: ScanSource | undefined): Promise<void> {
  let corked = true;
  socket.cork();
  try {
    socket.write(head, 'latin1');
    let sent = 0;
    if (source) {
      for await (const chunk of source.open()) {
        if (socket.destroyed) return;
        sent += chunk.length;
        if (!socket.write(chunk)) {
          socket.uncork();
          corked = false;
          await drained(socket);
          if (socket.destroyed) return;
          socket.cork();
          corked = true;
        }
      }
      // Content-length was taken from the spool's size; a difference would make spamd wait or misread.
      if (sent !== source.size) throw new Error(`the message had ${sent} bytes, not the ${source.size} announced`);
    }
  } finally {
    if (corked) socket.uncork();
  }
  // Half-close: spamd reads Content-length bytes, but the FIN ends a request it would otherwise wait on.
  socket.end();
}

/** Parses spamd's answer to SYMBOLS or REPORT (exported for the tests of malformed answers). */
export function parseCheckReply(reply: Buffer, command: SpamdOptions['command']): SpamdResult {
  const sep = reply.indexOf('\r\n\r\n');
  if (sep < 0) throw fail(`incomplete answer (${reply.length} bytes, no end of headers)`);
  const [status, ...headers] = reply.subarray(0, sep).toString('latin1').split('\r\n');
  const m = /^SPAMD\/1\.\d+ (\d+) (\S.*)$/.exec(status);
  if (!m) throw fail(`not a SPAMD answer: ${JSON.stringify(status.slice(0, 80))}`);
  if (m[1] !== '0') throw fail(`error ${m[1]} ${m[2].slice(0, 40).replace(/[^\x20-\x7e]/g, '?')}`);
  let verdict: { isSpam: boolean; score: number; required: number } | undefined;
  let length: number | undefined;
  for (const h of headers) {
    const colon = h.indexOf(':');
    const name = h.slice(0, colon).trim().toLowerCase();
    const value = h.slice(colon + 1).trim();
    if (name === 'spam') verdict = parseSpamHeader(value);
    else if (name === 'content-length') length = /^\d{1,9}$/.test(value) ? Number(value) : Number.NaN;
  }
  if (!verdict) throw fail('answer without a valid Spam header');
  const body = reply.subarray(sep + 4);
  if (length === undefined || Number.isNaN(length) || body.length !== length) throw fail(`answer body of ${body.length} bytes, Content-length ${length}`);
  const text = body.toString('latin1');
  return { ...verdict, symbols: command === 'SYMBOLS' ? parseSymbols(text) : parseReport(text) };
}

function parseSpamHeader(value: string): { isSpam: boolean; score: number; required: number } | undefined {
  const m = /^(True|False|Yes|No) ; (-?\d{1,6}(?:\.\d+)?) \/ (-?\d{1,6}(?:\.\d+)?)$/i.exec(value);
  if (!m) return undefined;
  return { isSpam: /^(true|yes)$/i.test(m[1]), score: Number(m[2]), required: Number(m[3]) };
}

function parseSymbols(text: string): SpamSymbol[] {
  return text
    .trim()
    .split(',')
    .map((s) => s.trim())
    .filter((s) => SYMBOL_NAME.test(s))
    .slice(0, MAX_SYMBOLS)
    .map((name) => ({ name }));
}

/**
 * The REPORT template's points table (SpamAssassin's _SUMMARY_): after a line of dashes, one
 * " 3.5 RULE_NAME   description" line per rule, descriptions wrapped onto indented lines.
 */
function parseReport(text: string): SpamSymbol[] {
  const lines = text.split(/\r?\n/);
  const start = lines.findIndex((l) => /^-{4} -{10,}/.test(l));
  if (start < 0) return [];
  const out: SpamSymbol[] = [];
  for (const line of lines.slice(start + 1)) {
    // Rule lines start within the 4-column points field; wrapped descriptions are indented further.
    const m = /^ {0,4}(-?\d{1,6}(?:\.\d+)?) +(\S+)/.exec(line);
    if (!m) continue;
    if (SYMBOL_NAME.test(m[2])) out.push({ name: m[2], score: Number(m[1]) });
    if (out.length >= MAX_SYMBOLS) break;
  }
  return out;
}
