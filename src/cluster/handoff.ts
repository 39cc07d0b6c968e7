/**
 * A cluster's milter connections above a worker's maxConnections (docs/milter.md "Processes"):
 * the workers accept from one shared socket (shared-sockets.ts), and a worker that wakes
 * first accepts every connection queued at that moment (libuv accepts until the queue is
 * empty), so a burst lands on it while another worker has room. Instead of closing those
 * above its limit, the worker hands each one to the primary, which gives it to a worker of
 * that socket that has not said it is full:
 *
 * - worker -> primary `room` (true/false) for a socket's key, only when its listener becomes
 *   full, has room again, or closes (reload, SIGTERM: no room): the primary spends nothing on
 *   a connection while no worker is full;
 * - worker -> primary `pass` with the connection and the listener's maxConnections; the primary
 *   forwards it as `take` to the holder with the fewest hand-offs not yet confirmed, or closes
 *   it and logs the refusal when none has room (what Postfix saw before: milter_default_action).
 *   A worker with maxConnections hand-offs unconfirmed on a socket has no room there either: one
 *   whose event loop is stuck says nothing, and a flood would otherwise queue every connection
 *   (a descriptor each) in the primary's channel to it;
 * - the receiving worker confirms with `took` and serves it as if it had accepted it, or
 *   refuses it (logged) when its listener is full by then, closing, or gone after a reload: a
 *   connection is handed at most once, so two full workers cannot pass it back and forth.
 *
 * Why the bare TCP handle (net.Native in Node's child_process) and not the documented
 * `process.send(msg, socket)`: for a socket of a net.Server Node tracks it across the
 * processes, and the worker's server.close() then waits for the primary to report it closed
 * (NODE_SOCKET_NOTIFY_CLOSE); and the primary's copy would be a net.Socket that starts reading,
 * eating Postfix's first packet while a forward waits for the previous hand-off's ack. So the
 * worker accepts with pauseOnConnect (nothing read) and sends `socket._handle`, closing its copy
 * once the send has completed; the receiver wraps the handle as child_process does (`new
 * net.Socket({ handle })`). Without those internals a worker refuses as before (logged).
 *
 * Never silent: every connection closed on the way has a log line; one in flight to a worker
 * that ends (crash, or a drain racing the forward) is counted in the primary's log line. A
 * process whose descriptor table is full receives the message without the descriptor (the
 * kernel drops it: MSG_CTRUNC), and Node then emits nothing there and answers the sender
 * NODE_HANDLE_NACK instead of NODE_HANDLE_ACK, an internal message (`internalMessage`) that does
 * not resend a bare handle: the sender logs that connection as refused (`onHandleAck`).
 */
import type { Worker } from 'node:cluster';
import net from 'node:net';
import type { Logger } from '../lib/log';
import type { Overflow } from '../listener/listen-sockets';

const KIND = 'postseal:milter-handoff';

type FromWorker = { kind: typeof KIND; key: string } & ({ op: 'pass'; limit: number } | { op: 'took' } | { op: 'room'; room: boolean });
type ToWorker = { kind: typeof KIND; op: 'take'; key: string };

const isFromWorker = (m: unknown): m is FromWorker => {
  const x = m as FromWorker | null;
  return x?.kind === KIND && typeof x.key === 'string' && ((x.op === 'pass' && x.limit > 0) || x.op === 'took' || x.op === 'room');
};
const isOurs = (m: unknown) => (m as FromWorker | null)?.kind === KIND;
const isTake = (m: unknown): m is ToWorker => (m as ToWorker | null)?.kind === KIND && (m as ToWorker).op === 'take' && typeof (m as ToWorker).key === 'string';

/** The parts of Node's TCP handle used here. */
interface Handle {
  close(): void;
}

/** The primary's side: who is full per socket, and the connections on their way to a worker. */
export class Handoffs {
  /** Per socket key: workers whose listener there has no room (or is closed). */
  private readonly full = new Map<string, Set<number>>();
  /** Per worker, then socket key: connections sent or queued for it that it has not confirmed. */
  private readonly unconfirmed = new Map<number, Map<string, number>>();
  /** Per worker: handles Node's channel still queues (its send has not completed): closed here if the worker ends first. */
  private readonly queued = new Map<number, Set<Handle>>();
  /** Per worker: the socket key of the connection written to its channel that Node has not yet seen acknowledged. */
  private readonly unacked = new Map<number, string>();
  private readonly watched = new WeakSet<Worker>();
  private turn = 0;

  /** `holders`: the live workers listening on a socket, or undefined when the primary no longer has it. */
  constructor(
    private readonly log: Logger,
    private readonly holders: (key: string) => Worker[] | undefined,
  ) {}

  /** A worker's message: true when it was a hand-off message (and is dealt with). */
  onMessage(worker: Worker, msg: unknown, handle: unknown): boolean {
    if (!isFromWorker(msg)) {
      if (!isOurs(msg)) return false;
      // Another version's message (a worker not yet replaced): a connection it carried is closed, not kept here.
      if (isHandle(handle)) handle.close();
      this.log.warn({ from: worker.id, op: (msg as { op?: unknown }).op, handed: isHandle(handle) }, 'milter hand-off message not understood; a connection it carried is closed');
      return true;
    }
    if (msg.op === 'room') {
      const set = this.full.get(msg.key) ?? new Set<number>();
      if (msg.room) set.delete(worker.id);
      else set.add(worker.id);
      if (set.size) this.full.set(msg.key, set);
      else this.full.delete(msg.key);
    } else if (msg.op === 'took') {
      this.count(worker.id, msg.key, -1);
    } else if (!isHandle(handle)) {
      this.log.warn({ socket: msg.key, from: worker.id }, 'milter connection lost: its hand-off arrived without the connection');
    } else {
      this.forward(worker, msg.key, msg.limit, handle);
    }
    return true;
  }

  /** A worker left a socket (reload) or ended: its room there no longer counts. */
  left(key: string, worker: number): void {
    this.full.get(key)?.delete(worker);
  }

  /** The primary closed a socket. */
  closed(key: string): void {
    this.full.delete(key);
  }

  /** A worker ended: connections still queued for it are closed, and any it had not confirmed are reported. */
  workerExited(id: number): void {
    for (const set of this.full.values()) set.delete(id);
    const queued = this.queued.get(id);
    for (const handle of queued ?? []) handle.close();
    // A send's callback that still comes finds its handle gone: closed and counted here.
    queued?.clear();
    const lost = [...(this.unconfirmed.get(id)?.values() ?? [])].reduce((a, b) => a + b, 0);
    if (lost > 0) this.log.warn({ worker: id, connections: lost }, 'milter connections handed to a worker that ended before taking them are closed');
    this.queued.delete(id);
    this.unconfirmed.delete(id);
    this.unacked.delete(id);
  }

  private forward(from: Worker, key: string, limit: number, handle: Handle): void {
    const holders = this.holders(key);
    const full = this.full.get(key);
    const waiting = (w: Worker) => this.unconfirmed.get(w.id)?.get(key) ?? 0;
    const room = (holders ?? []).filter((w) => w.id !== from.id && !full?.has(w.id) && waiting(w) < limit && w.isConnected());
    if (room.length === 0) {
      handle.close();
      const reason = holders ? 'no other worker has room (maxConnections)' : 'the socket is closed';
      this.log.warn({ socket: key, from: from.id, workers: holders?.length ?? 0, reason }, 'milter connection refused');
      return;
    }
    // The fewest unconfirmed first, in turn among equals: a burst spreads instead of piling on one.
    let to = room[this.turn++ % room.length];
    for (const w of room) if (waiting(w) < waiting(to)) to = w;
    const id = to.id;
    this.watch(to);
    this.count(id, key, 1);
    const queued = this.queued.get(id) ?? new Set<Handle>();
    this.queued.set(id, queued.add(handle));
    const sent = (err: Error | null) => {
      // Ended meanwhile: workerExited closed and counted it.
      if (!queued.delete(handle)) return;
      handle.close();
      // Handles are written one at a time, each after the previous one's acknowledgement: the next one is this one's.
      if (!err) this.unacked.set(id, key);
      if (!err) return void this.log.debug({ socket: key, from: from.id, to: id }, 'milter connection handed to another worker');
      this.count(id, key, -1);
      this.log.warn({ err, socket: key, worker: id }, 'milter connection refused: it could not be handed to a worker');
    };
    try {
      to.send({ kind: KIND, op: 'take', key } satisfies ToWorker, handle as unknown as net.Socket, sent);
    } catch (err) {
      sent(err as Error);
    }
  }

  private watch(w: Worker): void {
    if (this.watched.has(w)) return;
    this.watched.add(w);
    onHandleAck(w.process, (received) => {
      // A listening socket sent to the worker (shared-sockets.ts) is acknowledged too: unacked is then unset.
      const key = this.unacked.get(w.id);
      this.unacked.delete(w.id);
      if (received || key === undefined) return;
      this.count(w.id, key, -1);
      this.log.warn({ socket: key, worker: w.id, reason: 'it did not reach the worker it was handed to (out of file descriptors?)' }, 'milter connection refused');
    });
  }

  private count(worker: number, key: string, by: 1 | -1): void {
    const keys = this.unconfirmed.get(worker) ?? new Map<string, number>();
    const n = Math.max((keys.get(key) ?? 0) + by, 0);
    if (n) keys.set(key, n);
    else keys.delete(key);
    if (keys.size) this.unconfirmed.set(worker, keys);
    else this.unconfirmed.delete(worker);
  }
}

const isHandle = (h: unknown): h is Handle => typeof (h as Handle | null)?.close === 'function';

/** Node's acknowledgement of a handle sent on `channel` (see the header): true when it arrived with its descriptor. */
function onHandleAck(channel: { on(event: 'internalMessage', fn: (msg: unknown) => void): unknown }, fn: (received: boolean) => void): void {
  channel.on('internalMessage', (msg) => {
    const cmd = (msg as { cmd?: unknown } | null)?.cmd;
    if (cmd === 'NODE_HANDLE_ACK' || cmd === 'NODE_HANDLE_NACK') fn(cmd === 'NODE_HANDLE_ACK');
  });
}

/** What a worker needs of its channel to the primary (`process`). */
export interface HandoffChannel {
  readonly connected?: boolean;
  send(msg: unknown, handle?: unknown, callback?: (err: Error | null) => void): unknown;
  on(event: 'message', fn: (msg: unknown, handle: unknown) => void): unknown;
  on(event: 'internalMessage', fn: (msg: unknown) => void): unknown;
}

/** A worker's side: one `Overflow` per listener on a shared socket, keyed as the primary keys it; `others`: how many other workers could take connections. */
export function workerHandoff(channel: HandoffChannel, log?: Logger, others = 1): (key: string, take: (socket: net.Socket) => void) => Overflow {
  const takers = new Map<string, { take(socket: net.Socket): void; room: boolean }>();
  /** Keys the primary was last told this worker has no room on. */
  const told = new Set<string>();
  let attached = false;
  /** The socket key of the connection last written to the primary, until Node sees it acknowledged. */
  let unacked: string | undefined;
  const tell = (key: string) => {
    const room = takers.get(key)?.room === true;
    if (room === !told.has(key)) return;
    if (room) told.delete(key);
    else told.add(key);
    send({ kind: KIND, op: 'room', key, room });
  };
  const send = (msg: FromWorker) => {
    try {
      if (channel.connected !== false) channel.send(msg);
    } catch {
      // The channel is gone: the primary is gone too, and nothing is handed any more.
    }
  };
  const onMessage = (msg: unknown, handle: unknown) => {
    if (!isTake(msg)) return;
    send({ kind: KIND, op: 'took', key: msg.key });
    const refuse = (reason: string, err?: unknown) => log?.warn({ socket: msg.key, handed: true, reason, ...(err ? { err } : {}) }, 'milter connection refused');
    if (!isHandle(handle)) return refuse('the hand-off arrived without the connection');
    const taker = takers.get(msg.key);
    if (!taker) {
      handle.close();
      return refuse('no listener on that socket here (closing, or moved by a reload)');
    }
    let socket: net.Socket;
    try {
      // As Node's child_process wraps a received socket; paused like one accepted with pauseOnConnect.
      socket = new net.Socket({ handle, pauseOnCreate: true, readable: true, writable: true } as unknown as net.SocketConstructorOpts);
    } catch (err) {
      handle.close();
      return refuse('this Node cannot wrap a received connection', err);
    }
    taker.take(socket);
  };
  return (key, take) => {
    if (!attached) {
      attached = true;
      channel.on('message', onMessage);
      onHandleAck(channel, (received) => {
        const key = unacked;
        unacked = undefined;
        if (!received && key !== undefined) log?.warn({ socket: key, reason: 'it did not reach the primary (out of file descriptors?)' }, 'milter connection refused');
      });
    }
    const own = { take, room: true };
    takers.set(key, own);
    tell(key);
    // Sent, or queued in Node's channel behind the primary's acknowledgement of the previous one.
    let sending = 0;
    return {
      pass: (socket, limit) =>
        new Promise<void>((resolve, reject) => {
          const handle = (socket as unknown as { _handle?: unknown })._handle;
          // A flood faster than the primary acknowledges (about 2,400 a second measured) would queue
          // one descriptor each here, without end: beyond what the other workers could take, refused.
          if (sending >= limit * Math.max(others, 1)) {
            socket.destroy();
            return reject(new Error(`${sending} connections are already on their way to the primary (maxConnections of each other worker)`));
          }
          sending++;
          const done = (err: Error | null) => {
            sending--;
            if (!err) unacked = key;
            // The primary has its own copy now (or none was sent): this one closes either way.
            socket.destroy();
            if (err) reject(err);
            else resolve();
          };
          if (!handle || channel.connected === false) return done(new Error(handle ? 'the channel to the primary is closed' : 'this Node gives no handle to hand over'));
          try {
            channel.send({ kind: KIND, op: 'pass', key, limit } satisfies FromWorker, handle, done);
          } catch (err) {
            done(err as Error);
          }
        }),
      room(has) {
        if (takers.get(key) !== own || own.room === has) return;
        own.room = has;
        tell(key);
      },
      end() {
        if (takers.get(key) !== own) return;
        takers.delete(key);
        tell(key);
      },
    };
  };
}
