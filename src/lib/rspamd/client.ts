/**
 * A client of rspamd's normal worker (rspamd's protocol documentation, "Rspamd protocol",
 * as Debian's rspamd 3.4 answers it): POST /checkv2 with the message as the body and the
 * envelope and client as request headers (From, Rcpt once per recipient, IP, Helo, Hostname,
 * Queue-Id, and Settings-ID / Pass: all when configured), and GET /ping. node:http with one
 * keep-alive agent per client, so a message costs no TCP handshake; the body is streamed from
 * the spool with back-pressure, never buffered whole. npm has no standalone rspamd client
 * (haraka-plugin-rspamd is a Haraka plugin); the protocol is one HTTP request with headers.
 *
 * The answer is a JSON object; score, required_score, action and symbols are read and checked
 * (a number that is not finite, an action rspamd does not define, or symbols that are not an
 * object make the answer garbage), and is_skipped (rspamd ran no rule: the score means nothing). Symbol names that are not plain rule names are dropped.
 *
 * Fails with SPAM_SCANNER_FAILED: refused or lost connection, an HTTP status other than 200,
 * no complete answer within `timeoutMs`, an answer over `maxReplyBytes`, JSON that is not
 * rspamd's. Aborting `signal` destroys the request. A request on a kept-alive connection that
 * the server had already closed is retried once on a new one (rspamd closes idle connections).
 */
import { once } from 'node:events';
import http from 'node:http';
import { PostsealError } from '../../errors';
import { MAX_SYMBOLS, SYMBOL_NAME, type ScanSource, type SpamSymbol } from '../spamd/client';

export const RSPAMD_ACTIONS = ['no action', 'greylist', 'add header', 'rewrite subject', 'soft reject', 'reject'] as const;
export type RspamdAction = (typeof RSPAMD_ACTIONS)[number];

export interface RspamdOptions {
  /** A unix socket path; when set, host and port are not used. */
  readonly socket?: string;
  readonly host: string;
  readonly port: number;
  /** The whole call: connect, send, answer. */
  readonly timeoutMs: number;
  readonly maxReplyBytes?: number;
  /** How long an idle kept-alive connection is kept (below rspamd's own keepalive timeout). */
  readonly idleTimeoutMs?: number;
}

/** What rspamd is told about the message besides its bytes (all optional). */
export interface RspamdEnvelope {
  readonly from?: string;
  readonly rcpt?: readonly string[];
  readonly ip?: string;
  readonly helo?: string;
  readonly hostname?: string;
  readonly queueId?: string;
  readonly settingsId?: string;
  /** Pass: all, every rule runs even when the result is already certain (complete symbols). */
  readonly passAll?: boolean;
}

export interface RspamdResult {
  readonly score: number;
  readonly required: number;
  readonly action: RspamdAction;
  readonly symbols: readonly SpamSymbol[];
  /** rspamd did not run its rules (is_skipped: a prefilter such as GTUBE decided, its settings said so, or the message passed its max_message). */
  readonly skipped: boolean;
}

export interface RspamdClient {
  check(source: ScanSource, envelope: RspamdEnvelope, signal?: AbortSignal): Promise<RspamdResult>;
  ping(signal?: AbortSignal): Promise<void>;
  /** Closes the kept-alive connections. */
  close(): void;
}

const DEFAULT_MAX_REPLY = 1024 * 1024;
const fail = (why: string, cause?: unknown) => new PostsealError('SPAM_SCANNER_FAILED', `rspamd: ${why}`, { cause });

/** Header values go out as bytes: an SMTPUTF8 address is sent as its UTF-8, control characters never. */
function headerValue(v: string): string {
  return Buffer.from(v.replace(/[\x00-\x1f\x7f]/g, ''), 'utf8').toString('latin1');
}

function requestHeaders(source: ScanSource, env: RspamdEnvelope): http.OutgoingHttpHeaders {
  const h: http.OutgoingHttpHeaders = { 'Content-Length': source.size };
  // rspamd reads an empty From as the null sender <>.
  if (env.from !== undefined) h.From = env.from === '' ? '<>' : headerValue(env.from);
  if (env.rcpt?.length) h.Rcpt = env.rcpt.map(headerValue);
  if (env.ip) h.IP = headerValue(env.ip);
  if (env.helo) h.Helo = headerValue(env.helo);
  if (env.hostname) h.Hostname = headerValue(env.hostname);
  if (env.queueId) h['Queue-Id'] = headerValue(env.queueId);
  if (env.settingsId) h['Settings-ID'] = headerValue(env.settingsId);
  if (env.passAll) h.Pass = 'all';
  return h;
}

export function createRspamdClient(opts: RspamdOptions): RspamdClient {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64, timeout: opts.idleTimeoutMs ?? 10_000 });
  const target = opts.socket ? { socketPath: opts.socket } : { host: opts.host, port: opts.port };
  const max = opts.maxReplyBytes ?? DEFAULT_MAX_REPLY;
  const where = opts.socket ? `unix:${opts.socket}` : `${opts.host}:${opts.port}`;

  /** `deadline` (epoch ms) is the whole call's, a retry included. */
  function request(
    method: 'GET' | 'POST',
    path: string,
    headers: http.OutgoingHttpHeaders,
    source: ScanSource | undefined,
    signal: AbortSignal | undefined,
    deadline: number,
    retry: boolean,
  ): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      if (signal?.aborted) return reject(fail('aborted before sending', signal.reason));
      let settled = false;
      const req = http.request({ ...target, agent, method, path, headers });
      const finish = (err: Error | null, body?: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (err) {
          req.destroy();
          reject(err);
        } else resolve(body ?? '');
      };
      const onAbort = () => finish(fail('aborted', signal?.reason));
      const timer = setTimeout(() => finish(fail(`no complete answer from ${where} within ${opts.timeoutMs} ms`)), Math.max(0, deadline - Date.now()));
      signal?.addEventListener('abort', onAbort, { once: true });
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (settled) return;
        // The agent handed us a connection rspamd had closed while idle: once more on a new one.
        if (retry && req.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) {
          settled = true;
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          request(method, path, headers, source, signal, deadline, false).then(resolve, reject);
          return;
        }
        finish(fail(`${where}: ${err.code ?? err.message}`, err));
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let got = 0;
        res.on('data', (d: Buffer) => {
          got += d.length;
          if (got > max) return finish(fail(`answer longer than ${max} bytes`));
          chunks.push(d);
        });
        res.on('error', (err) => finish(fail(`reading the answer: ${err.message}`, err)));
        res.on('end', () => {
          if (res.statusCode !== 200) return finish(fail(`HTTP ${res.statusCode} for ${path}`));
          finish(null, Buffer.concat(chunks, got).toString('utf8'));
        });
      });
      sendBody(req, source).catch((err) => finish(fail(`sending the message: ${(err as Error).message}`, err)));
    });
  }

  return {
    async check(source, envelope, signal) {
      const body = await request('POST', '/checkv2', requestHeaders(source, envelope), source, signal, Date.now() + opts.timeoutMs, true);
      return parseCheckV2(body);
    },
    async ping(signal) {
      const body = await request('GET', '/ping', {}, undefined, signal, Date.now() + opts.timeoutMs, true);
      if (body.trim() !== 'pong') throw fail(`answered /ping with ${JSON.stringify(body.slice(0, 40))}`);
    },
    close() {
      agent.destroy();
    },
  };
}

async function sendBody(req: http.ClientRequest, source: ScanSource | undefined): Promise<void> {
  if (!source) return void req.end();
  let sent = 0;
  for await (const chunk of source.open()) {
    if (req.destroyed) return;
    sent += chunk.length;
    if (!req.write(chunk)) await once(req, 'drain');
  }
  if (sent !== source.size) throw new Error(`the message had ${sent} bytes, not the ${source.size} announced`);
  req.end();
}

/** Parses a /checkv2 answer (exported for the tests of malformed answers). */
export function parseCheckV2(body: string): RspamdResult {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (err) {
    throw fail(`answer is not JSON (${body.length} bytes)`, err);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw fail('answer is not a JSON object');
  const o = json as Record<string, unknown>;
  const score = o.score;
  const required = o.required_score;
  const action = o.action;
  if (typeof score !== 'number' || !Number.isFinite(score)) throw fail('answer without a numeric score');
  if (typeof required !== 'number' || !Number.isFinite(required)) throw fail('answer without a numeric required_score');
  if (typeof action !== 'string' || !(RSPAMD_ACTIONS as readonly string[]).includes(action)) throw fail('answer without a known action');
  const raw = o.symbols ?? {};
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw fail('answer whose symbols are not an object');
  const symbols: SpamSymbol[] = [];
  for (const [name, sym] of Object.entries(raw as Record<string, unknown>)) {
    if (symbols.length >= MAX_SYMBOLS) break;
    if (!SYMBOL_NAME.test(name)) continue;
    const s = (sym as { score?: unknown } | null)?.score;
    symbols.push({ name, score: typeof s === 'number' && Number.isFinite(s) ? s : undefined });
  }
  return { score, required, action: action as RspamdAction, symbols, skipped: o.is_skipped === true };
}
