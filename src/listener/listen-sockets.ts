/**
 * Where a milter listener's listening socket comes from (docs/milter.md "Processes"): in one
 * process, its own bind and listen; in a cluster's worker, the one socket the primary bound
 * for that address and port and sends to every worker (cluster/shared-sockets.ts), so that
 * the workers accept from it themselves instead of the primary accepting each connection and
 * handing it over; a worker at its maxConnections hands the surplus to another worker
 * (`overflow`, cluster/handoff.ts). SMTP listeners do not come through here: Postfix's content filter reuses
 * its connections, so the hand-off costs little there (bench/README.md).
 *
 * Fails with the socket's own error (EADDRINUSE, EACCES, ...); the listener wraps it in
 * LISTEN_FAILED.
 */
import type net from 'node:net';

/** A listener's socket: address and port as configured, and its position among the listeners (which port-0 listeners share). */
export interface SocketAt {
  readonly address: string;
  readonly port: number;
  readonly slot: number;
}

export interface ListenSockets {
  /** Other processes listen on these sockets too (a cluster's workers): a reload cannot give a port to another kind of listener or address. */
  readonly shared: boolean;
  /** Makes `server` listen on `at`; rejects when it cannot. */
  listen(server: net.Server, at: SocketAt): Promise<void>;
  /** A reload left no listener on `at`: the socket may close once no process listens on it. */
  retire(at: SocketAt): void;
  /**
   * Once `at` listens: how its connections above maxConnections go to another process that
   * shares the socket (a cluster's workers on the primary's socket, cluster/handoff.ts), with
   * `take` for those handed to this one; undefined where nothing shares it.
   */
  overflow?(at: SocketAt, take: (socket: net.Socket) => void): Overflow | undefined;
}

/** A listener's connections above its limit, and its room as the other processes see it. */
export interface Overflow {
  /**
   * Hands a connection accepted with pauseOnConnect (nothing read) to another process, which
   * takes at most `limit` (the listener's maxConnections); closes this process's copy either
   * way; rejects when it could not (the caller logs the refusal).
   */
  pass(socket: net.Socket, limit: number): Promise<void>;
  /** The listener is full (false) or has room again (true): told on each change. */
  room(has: boolean): void;
  /** The listener closes: connections handed to it from now on are refused. */
  end(): void;
}

/** Two listeners on one socket: the same address and port, or the same slot for port 0 (each binds its own). */
export function sameSocket(a: SocketAt, b: SocketAt): boolean {
  return a.address === b.address && a.port === b.port && (a.port !== 0 || a.slot === b.slot);
}

/** One process: the listener binds and listens itself (in a cluster worker: Node's hand-off from the primary). */
export const ownSockets: ListenSockets = {
  shared: false,
  listen: (server, at) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(at.port, at.address, () => {
        server.off('error', reject);
        resolve();
      });
    }),
  retire: () => undefined,
};
