/**
 * The policy service (config services.policy): a TCP (or unix socket) server speaking Postfix's
 * policy delegation protocol (protocol.ts), deciding each request with decide.ts. Runs in every
 * worker (Node cluster shares the listening socket); state is in the shared store.
 *
 * Never a hang, never a crash: every request is answered within decisionTimeoutMs (SPF lookups
 * are aborted then); an error while deciding (store down, a bug) is answered
 * "DEFER_IF_PERMIT 4.3.0" and logged; requests pipelined on one connection are answered in
 * order, one decided at a time (at most 16 parsed ahead; reading pauses while they wait or
 * the client does not read its answers; the event loop gets a turn every 16); an oversized or malformed
 * request is answered DEFER_IF_PERMIT and the connection closed; a request left unfinished for
 * requestTimeoutMs, or no request for idleTimeoutMs, closes the connection; connections past
 * maxConnections are closed at once.
 *
 * Fails with POLICY_LISTEN_FAILED when it cannot bind; CFG_POLICY_WHITELIST when a whitelist
 * file cannot be read, CFG_INCONSISTENT when greylisting's retry window is not longer than its
 * delay (start fails; a reload is refused and the running settings stay).
 */
import cluster from 'node:cluster';
import { chmodSync } from 'node:fs';
import net from 'node:net';
import { removeStaleSocket } from './stale-socket';
import { isPostsealError, PostsealError } from '../../errors';
import type { Logger } from '../../lib/log';
import { LogLimit, REPEATED_FAILURE_LOG_MS } from '../../lib/log-limit';
import type { Telemetry } from '../../lib/telemetry';
import type { LoadedConfig } from '../../setup';
import { replies } from '../../smtp/replies';
import type { Service } from '../service';
import { buildContext } from './context';
import { decide, type MessageMemory, type PolicyContext, type PolicyDeps, type PolicySettings } from './decide';
import { formatAnswer, RequestReader, type PolicyRequest } from './protocol';

const MAX_QUEUED = 16;

export interface PolicyServiceDeps extends PolicyDeps {
  readonly log: Logger;
  /** Metrics (lib/telemetry.ts); none: metrics off. */
  readonly telemetry?: Telemetry;
}

export class PolicyService implements Service {
  readonly name = 'policy';
  private server: net.Server | undefined;
  private ctx: PolicyContext | undefined;
  private readonly sockets = new Set<net.Socket>();
  /** Each connection's requests read and waiting for their answer. */
  private readonly queues = new Map<net.Socket, readonly PolicyRequest[]>();
  /** A store failure repeats with every request while it lasts (a full disk): a line a minute. */
  private readonly storeLog = new LogLimit(REPEATED_FAILURE_LOG_MS, () => this.deps.now());
  private readonly storeWriteFailed = (err: unknown) => this.logStoreFailure(err, 'greylisting state not stored; the decision stands (a pass stays a pass)');

  constructor(
    private readonly config: LoadedConfig,
    private readonly deps: PolicyServiceDeps,
  ) {}

  get port(): number {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a.port : 0;
  }

  /** Connections open now (for tests of the limits). */
  get connections(): number {
    return this.sockets.size;
  }

  /** Answer bytes written and not yet taken by the clients, all connections (tests of the limits). */
  get bufferedAnswerBytes(): number {
    let n = 0;
    for (const s of this.sockets) n += s.writableLength;
    return n;
  }

  /** Requests parsed and not yet answered, all connections (tests of the limits). */
  get queuedRequests(): number {
    let n = 0;
    for (const q of this.queues.values()) n += q.length;
    return n;
  }

  async start(): Promise<void> {
    // The whitelist files are read here, so a missing one fails start() like a busy port.
    this.ctx = buildContext(this.config);
    this.server = await this.listen(this.ctx.settings);
  }

  async reload(next: LoadedConfig): Promise<void> {
    const ctx = buildContext(next);
    const was = (this.ctx ?? buildContext(this.config)).settings;
    const now = ctx.settings;
    if (now.address !== was.address || now.port !== was.port || now.socket !== was.socket) {
      await this.closeServer(false);
      try {
        this.server = await this.listen(now);
      } catch (err) {
        this.server = await this.listen(was).catch(() => undefined);
        throw err;
      }
    }
    this.ctx = ctx;
    this.deps.log.info({ clients: ctx.lists.clients.size, recipients: ctx.lists.recipients.size }, 'policy whitelists loaded');
  }

  async close(): Promise<void> {
    await this.closeServer(true);
  }

  private async listen(s: PolicySettings): Promise<net.Server> {
    // allowHalfOpen: a client that writes its requests and then shuts down its side (printf ... |
    // nc -N, a monitoring probe) still gets the answers; serve() ends the connection after them.
    const server = net.createServer({ allowHalfOpen: true }, (socket) => this.serve(socket));
    server.maxConnections = s.maxConnections;
    const where = s.socket || `${s.address}:${s.port}`;
    // A socket file left by a process that died would make listen fail (stale-socket.ts); a
    // worker leaves it alone: the primary removed it before forking (cli/start-command.ts).
    if (s.socket && !cluster.isWorker) await removeStaleSocket(s.socket);
    return new Promise((resolve, reject) => {
      server.once('error', (err) => reject(new PostsealError('POLICY_LISTEN_FAILED', `cannot listen for policy requests on ${where}: ${err.message}`, { cause: err })));
      const done = () => {
        // Postfix's smtpd (user postfix) must be able to connect whatever the umask (the systemd
        // unit's is 077): the socket is 0666, and the folder it is in decides who reaches it.
        if (s.socket) chmodSync(s.socket, 0o666);
        this.deps.log.info({ listen: s.socket || `${s.address}:${(server.address() as net.AddressInfo).port}` }, 'policy service listening');
        resolve(server);
      };
      if (s.socket) server.listen(s.socket, done);
      else server.listen(s.port, s.address, done);
    });
  }

  private async closeServer(dropClients: boolean): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    // Postfix reconnects; a policy answer is not worth holding shutdown for.
    if (dropClients) for (const s of this.sockets) s.destroy();
    await closed;
  }

  private serve(socket: net.Socket): void {
    this.sockets.add(socket);
    this.deps.telemetry?.serviceConnection('policy', 1);
    socket.on('close', () => {
      this.sockets.delete(socket);
      this.deps.telemetry?.serviceConnection('policy', -1);
    });
    socket.on('error', () => socket.destroy());
    // UTF-8: Postfix passes SMTPUTF8 addresses as their UTF-8 bytes. Read as latin1 and written as
    // UTF-8 they went back encoded twice (Received-SPF), and an IDN sender domain was looked up
    // under a garbled name (SPF none instead of its result).
    socket.setEncoding('utf8');
    const s = (this.ctx as PolicyContext).settings;
    const reader = new RequestReader(s.maxRequestBytes);
    // What this connection remembers of the message its requests are about (Postfix's instance).
    // A new message gets a new object: a decision that timed out and finishes later writes into
    // the old one, never into the next message's.
    let memory: MessageMemory = {};
    const queue: PolicyRequest[] = [];
    this.queues.set(socket, queue);
    socket.on('close', () => this.queues.delete(socket));
    let busy = false;
    let closing = false;
    socket.setTimeout(s.idleTimeoutMs, () => socket.destroy());
    let requestTimer: NodeJS.Timeout | undefined;
    const watchRequest = () => {
      // Whole requests waiting to be parsed are the client's answers waiting, not a slow client.
      const unfinished = reader.midRequest && !reader.backlog;
      if (unfinished && !requestTimer) requestTimer = setTimeout(() => socket.destroy(), s.requestTimeoutMs);
      if (!unfinished && requestTimer) {
        clearTimeout(requestTimer);
        requestTimer = undefined;
      }
    };
    socket.on('close', () => clearTimeout(requestTimer));

    // Reading stops while 16 requests wait or while the client does not take our answers: a
    // client that writes requests and never reads would otherwise grow our write buffer
    // without bound (measured: 1.8 MB after 4 s from one connection, growing as long as it sent).
    // Requests are parsed only to fill the 16: one read can hold 16,384 tiny ones (3.3 MB
    // parsed; 11,424 of them were waiting behind a client that did not read).
    const refill = () => {
      for (const r of reader.take(MAX_QUEUED - queue.length)) {
        if (r.kind === 'request') queue.push(r.request);
        else {
          this.deps.log.warn({ peer: socket.remoteAddress, reason: r.reason }, 'policy request refused, closing the connection');
          closing = true;
          const e = replies.policyError;
          // Answered after the requests before it, then the connection ends.
          queue.push(new Map([['__error', `DEFER_IF_PERMIT ${e.enhanced} Policy request ${r.reason}`]]));
        }
      }
      watchRequest();
    };
    const flow = () => {
      if (closing || queue.length >= MAX_QUEUED || reader.backlog || socket.writableNeedDrain) socket.pause();
      else socket.resume();
    };
    socket.on('drain', flow);
    const drained = () =>
      new Promise<void>((resolve) => {
        const done = () => {
          socket.off('drain', done).off('close', done);
          resolve();
        };
        socket.on('drain', done).on('close', done);
      });
    const pump = async () => {
      if (busy) return;
      busy = true;
      let answered = 0;
      while (!socket.destroyed) {
        if (!queue.length) refill();
        if (!queue.length) break;
        // One chunk read can hold hundreds of requests: their answers wait for the client too.
        if (socket.writableNeedDrain) await drained();
        // Answers decided without I/O (DUNNO) chain on microtasks only: without a turn of the
        // event loop now and then, one client's backlog would hold up every other connection.
        if (++answered % MAX_QUEUED === 0) await new Promise((resolve) => setImmediate(resolve));
        if (socket.destroyed) break;
        const req = queue.shift() as PolicyRequest;
        const instance = req.get('instance') ?? '';
        if (!instance || memory.instance !== instance) memory = { instance };
        const action = await this.answer(req, memory);
        if (!socket.destroyed) socket.write(formatAnswer(action));
        flow();
      }
      busy = false;
      // After a half-close: what was left unfinished is dropped with the connection.
      if (closing && !socket.destroyed) {
        if (reader.midRequest) socket.destroy();
        else socket.end();
      }
    };

    // The client shut down its side: answer what it sent, then end ours; a request it left
    // unfinished is dropped with the connection.
    socket.on('end', () => {
      closing = true;
      void pump();
    });
    socket.on('data', (chunk: string) => {
      reader.feed(chunk, 0);
      refill();
      flow();
      void pump();
    });
  }

  /** At most a line a minute, saying how many were held back since the last. */
  private logStoreFailure(err: unknown, what: string, instance?: string): void {
    const heldBack = this.storeLog.take();
    if (heldBack !== undefined) this.deps.log.error({ err, code: 'STORE_UNAVAILABLE', instance, heldBack }, `${what}; store failures are logged at most once a minute`);
  }

  /** Never rejects: errors and timeouts become DEFER_IF_PERMIT. */
  private async answer(req: PolicyRequest, memory: MessageMemory): Promise<string> {
    const refused = req.get('__error');
    if (refused) return refused;
    const ctx = this.ctx as PolicyContext;
    const timeoutMs = ctx.settings.decisionTimeoutMs;
    const abort = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<string>((resolve) => {
      timer = setTimeout(() => {
        abort.abort(new Error('policy decision timed out'));
        this.deps.log.warn({ timeoutMs, instance: req.get('instance') }, 'policy decision timed out');
        resolve(`DEFER_IF_PERMIT ${replies.policyError.enhanced} ${replies.policyError.text} (timeout)`);
      }, timeoutMs);
    });
    try {
      return await Promise.race([decide(ctx, this.deps, req, memory, abort.signal, this.storeWriteFailed), timeout]);
    } catch (err) {
      if (isPostsealError(err, 'STORE_UNAVAILABLE')) this.logStoreFailure(err, 'policy decision failed: the store is unavailable, answered DEFER_IF_PERMIT', req.get('instance'));
      else this.deps.log.error({ err, code: (err as { code?: unknown }).code, instance: req.get('instance') }, 'policy decision failed');
      return `DEFER_IF_PERMIT ${replies.policyError.enhanced} ${replies.policyError.text}`;
    } finally {
      clearTimeout(timer);
    }
  }
}
