/**
 * The milter listeners' sockets in a cluster (docs/milter.md "Processes", bench/README.md
 * "One socket for the workers"): the primary binds each milter address and port once and sends
 * the bound socket to every worker that asks; each worker listens and accepts on it, and the
 * kernel wakes the workers that wait in accept. The primary never listens or accepts on it, so
 * a new connection costs no hand-off (0.1–0.3 ms of the primary's CPU and the worker's IPC read
 * with Node's round robin), and a worker whose event loop is stuck takes no new connections.
 *
 * Why these calls: Node's cluster does the same for SCHED_NONE, but for every listener of the
 * process and with no say over when the primary closes the socket; SMTP listeners keep the
 * round robin. No documented API gives the primary a socket that is bound, not listening, and
 * that it can send and keep: a `net.Server` listens in the primary, whose event loop would then
 * accept; `net.BoundSocket` (Node 24) binds without listening, but Node 24's `worker.send` does
 * not take it (newer versions do, and leave the sender without it). So the primary binds with
 * `net._createServerHandle` (exported by node:net, what lib/internal/cluster/shared_handle.js
 * calls) and sends that handle with `worker.send(message, sendHandle)` as Node's cluster does;
 * the worker passes it to the documented `server.listen(handle)`, which calls listen(2) on it
 * there. Without that function (another runtime) the workers listen as before
 * (`socketsSupported`); when it throws or returns no handle (a Node that changed it), the
 * primary says so (ENOSYS, logged) and that worker listens as before too.
 *
 * A worker at a listener's maxConnections hands the connections above it to another worker
 * through the primary (handoff.ts), the only milter connections the primary touches.
 *
 * What the primary keeps (a socket outlives its workers):
 * - a socket stays open while the configuration names it: a worker that crashes or is replaced
 *   gets the same socket, connections queued meanwhile wait in its backlog;
 * - a reload that keeps the address and port keeps the socket; one that moves the listener
 *   asks for the new socket first and retires the old one (`retire`), which the primary closes
 *   once no worker that retired it or exited still listens on it; a socket that no worker
 *   holds once all have started (the file moved it while every worker was down) closes too;
 * - a second postseal, or another listener, on the same port: bind or listen fails with
 *   EADDRINUSE as with Node's own listeners (the check within one configuration is the
 *   loader's, config/load.ts, and the worker's own, below);
 * - on SIGTERM the primary lets go of every socket: each closes when the last worker's listener
 *   does.
 *
 * Fails (as the worker's listen error, then LISTEN_FAILED): the bind's error code (EADDRINUSE,
 * EACCES, EADDRNOTAVAIL), ETIMEDOUT when the primary does not answer within ASK_TIMEOUT_MS.
 */
import type { Worker } from 'node:cluster';
import dns from 'node:dns';
import net from 'node:net';
import { getSystemErrorName } from 'node:util';
import type { Logger } from '../lib/log';
import { ownSockets, type ListenSockets, type SocketAt } from '../listener/listen-sockets';
import { Handoffs, workerHandoff, type HandoffChannel } from './handoff';

const KIND = 'postseal:listen-socket';
/** A primary busy forking still answers within milliseconds; this only stops a start-up from hanging. */
const ASK_TIMEOUT_MS = 10_000;

/** An address as bound: numeric, with its family; the slot tells port-0 listeners apart. */
interface Where {
  address: string;
  family: 4 | 6;
  port: number;
  slot: number;
}
type Request = Where & { kind: typeof KIND; op: 'get' | 'retire'; id: number };
type Reply = { kind: typeof KIND; op: 'socket'; id: number; error?: string };

/** The parts of Node's TCP handle used here. */
interface TcpHandle {
  close(): void;
  getsockname(out: Record<string, unknown>): number;
}
type CreateServerHandle = (address: string, port: number, addressType: 4 | 6) => TcpHandle | number;

const createServerHandle = (net as unknown as { _createServerHandle?: CreateServerHandle })._createServerHandle;
/** The primary's answer when that internal function fails as called (a Node that changed it): the worker listens as without it. */
const UNSUPPORTED = 'ENOSYS';

/** Whether this Node can bind a socket without listening (see the header); else workers listen as before. */
export const socketsSupported = typeof createServerHandle === 'function';

const keyOf = (w: Where) => `${w.address}:${w.port}${w.port === 0 ? `#${w.slot}` : ''}`;
const isRequest = (m: unknown): m is Request => (m as Request | null)?.kind === KIND && ((m as Request).op === 'get' || (m as Request).op === 'retire');
const isReply = (m: unknown): m is Reply => (m as Reply | null)?.kind === KIND && (m as Reply).op === 'socket';

interface Entry {
  readonly handle: TcpHandle;
  readonly where: Where;
  /** Workers given the socket that have neither exited nor retired it. */
  readonly holders: Set<number>;
  /** A worker's reload left it: closed once no holder is left. */
  retiring: boolean;
}

/** The primary's side: binds on a worker's first request, answers later ones with the same socket. */
export class SharedSockets {
  private readonly sockets = new Map<string, Entry>();
  private readonly workers = new Map<number, Worker>();
  /** Connections a full worker hands on (handoff.ts). */
  private readonly handoffs: Handoffs;
  private stopped = false;

  constructor(private readonly log: Logger) {
    this.handoffs = new Handoffs(log, (key) => {
      const entry = this.sockets.get(key);
      return entry && [...entry.holders].flatMap((id) => this.workers.get(id) ?? []);
    });
  }

  /** A worker's message, with the handle it carried: true when it was about sockets (and is answered). */
  onMessage(worker: Worker, msg: unknown, handle?: unknown): boolean {
    if (this.handoffs.onMessage(worker, msg, handle)) return true;
    if (!isRequest(msg)) return false;
    const key = keyOf(msg);
    if (msg.op === 'retire') {
      this.let(key, worker.id, true);
      return true;
    }
    const reply = (error?: string, handle?: TcpHandle) => {
      if (!worker.isConnected()) return;
      const body: Reply = { kind: KIND, op: 'socket', id: msg.id, ...(error ? { error } : {}) };
      worker.send(body, handle as net.Server | undefined, (err: Error | null) => {
        if (err) this.log.warn({ err, worker: worker.id }, 'could not send a listening socket to a worker');
      });
    };
    if (this.stopped) {
      reply('ESHUTDOWN: postseal is stopping');
      return true;
    }
    let entry = this.sockets.get(key);
    if (!entry) {
      const bound = bind(msg);
      if (typeof bound === 'string') {
        if (bound.startsWith(UNSUPPORTED))
          this.log.warn({ address: msg.address, port: msg.port, reason: bound }, "milter socket not bound for the workers: they listen through Node's cluster");
        reply(`${bound}: cannot bind ${msg.address}:${msg.port}`);
        return true;
      }
      entry = { handle: bound.handle, where: { address: msg.address, family: msg.family, port: bound.port, slot: msg.slot }, holders: new Set(), retiring: false };
      this.sockets.set(key, entry);
      this.log.info({ address: msg.address, port: bound.port }, 'milter socket bound for the workers');
    }
    entry.holders.add(worker.id);
    this.workers.set(worker.id, worker);
    entry.retiring = false;
    reply(undefined, entry.handle);
    return true;
  }

  /** A worker ended: its replacement asks again; a socket a reload retired closes when its last holder is gone. */
  workerExited(id: number): void {
    for (const key of [...this.sockets.keys()]) this.let(key, id, false);
    this.workers.delete(id);
    this.handoffs.workerExited(id);
  }

  /**
   * Every live worker has started (each asked for the sockets of its configuration first): a
   * socket none of them holds is one no configuration names any more, e.g. the file moved the
   * listener while every worker was down and no worker was left to retire it. Kept, it would
   * queue Postfix's connections that nobody accepts instead of refusing them.
   */
  workersReady(): void {
    for (const [key, entry] of [...this.sockets]) if (entry.holders.size === 0) this.close(key);
  }

  /** SIGTERM: each socket closes when the workers' listeners have closed it too. */
  closeAll(): void {
    this.stopped = true;
    for (const key of [...this.sockets.keys()]) this.close(key);
  }

  private let(key: string, worker: number, retire: boolean): void {
    const entry = this.sockets.get(key);
    if (!entry) return;
    entry.holders.delete(worker);
    this.handoffs.left(key, worker);
    if (retire) entry.retiring = true;
    if (entry.retiring && entry.holders.size === 0) this.close(key);
  }

  private close(key: string): void {
    const entry = this.sockets.get(key)!;
    this.sockets.delete(key);
    this.handoffs.closed(key);
    entry.handle.close();
    this.log.info({ address: entry.where.address, port: entry.where.port }, 'milter socket closed');
  }
}

/** Bound, not listening; the bound port, or the error's name (libuv reports a port in use at the first getsockname). */
function bind(w: Where): { handle: TcpHandle; port: number } | string {
  let handle: TcpHandle | number;
  try {
    handle = createServerHandle!(w.address, w.port, w.family);
  } catch (err) {
    return `${UNSUPPORTED}: net._createServerHandle failed (${(err as Error).message})`;
  }
  if (typeof handle === 'number') return getSystemErrorName(handle);
  if (typeof handle?.getsockname !== 'function') return `${UNSUPPORTED}: net._createServerHandle returned no TCP handle`;
  const out: Record<string, unknown> = {};
  const err = handle.getsockname(out);
  if (err) {
    handle.close();
    return getSystemErrorName(err);
  }
  return { handle, port: out.port as number };
}

/** What a worker needs of its channel to the primary (`process`). */
export interface PrimaryChannel extends HandoffChannel {
  off(event: 'message', fn: (msg: unknown, handle: unknown) => void): unknown;
}

/**
 * A worker's side (`workers`: the cluster's): asks the primary for each milter socket. Two listeners of this worker on
 * one socket would split its connections between their banks: the second is refused with
 * EADDRINUSE, as a second bind would be.
 */
export function socketsFromPrimary(log?: Logger, workers = 2, channel: PrimaryChannel = process as unknown as PrimaryChannel): ListenSockets {
  const held = new Set<string>();
  const overflowAt = workerHandoff(channel, log, workers - 1);
  const resolved = new Map<string, Where>();
  const pending = new Map<number, { resolve(h: object): void; reject(e: Error): void; timer: NodeJS.Timeout }>();
  let next = 0;
  const onMessage = (msg: unknown, handle: unknown) => {
    if (!isReply(msg)) return;
    const p = pending.get(msg.id);
    if (!p) return (handle as TcpHandle | undefined)?.close();
    settle(msg.id);
    if (msg.error || !handle) p.reject(new Error(msg.error ?? 'the primary sent no socket'));
    else p.resolve(handle as object);
  };
  const settle = (id: number) => {
    clearTimeout(pending.get(id)!.timer);
    pending.delete(id);
    if (pending.size === 0) channel.off('message', onMessage);
  };
  const ask = (w: Where) =>
    new Promise<object>((resolve, reject) => {
      const id = next++;
      const timer = setTimeout(() => {
        settle(id);
        reject(new Error(`ETIMEDOUT: the cluster's primary sent no socket in ${ASK_TIMEOUT_MS} ms`));
      }, ASK_TIMEOUT_MS);
      if (pending.size === 0) channel.on('message', onMessage);
      pending.set(id, { resolve, reject, timer });
      channel.send({ kind: KIND, op: 'get', id, ...w } satisfies Request);
    });
  const atKey = (at: SocketAt) => `${at.address}|${at.port}|${at.slot}`;
  return {
    shared: true,
    async listen(server, at) {
      // As server.listen(port, host) would: the first address the name resolves to.
      const { address, family } = await dns.promises.lookup(at.address);
      const where: Where = { address, family: family === 6 ? 6 : 4, port: at.port, slot: at.slot };
      const key = keyOf(where);
      if (held.has(key)) throw new Error(`EADDRINUSE: another listener of this configuration listens on ${at.address}:${at.port}`);
      held.add(key);
      try {
        const handle = await ask(where).catch((err: Error) => {
          if (err.message.startsWith(UNSUPPORTED)) return undefined;
          throw err;
        });
        if (!handle) {
          await ownSockets.listen(server, at);
          server.once('close', () => held.delete(key));
          return;
        }
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(handle, () => {
            server.off('error', reject);
            resolve();
          });
        });
      } catch (err) {
        held.delete(key);
        throw err;
      }
      resolved.set(atKey(at), where);
      server.once('close', () => held.delete(key));
    },
    retire(at) {
      const where = resolved.get(atKey(at));
      // A listener of this worker that listens there now (the same address under another name) keeps it.
      if (!where || held.has(keyOf(where))) return;
      resolved.delete(atKey(at));
      channel.send({ kind: KIND, op: 'retire', id: -1, ...where } satisfies Request);
    },
    overflow(at, take) {
      // Only on the primary's socket: a listener that fell back to Node's round robin refuses as before.
      const where = resolved.get(atKey(at));
      return where && overflowAt(keyOf(where), take);
    },
  };
}
