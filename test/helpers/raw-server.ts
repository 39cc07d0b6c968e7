/**
 * A loopback TCP server that answers each connection from a script, for the answers a real
 * scanner cannot be made to give (garbage, a truncated answer, silence, an answer that never
 * ends). `answer` gets what the client sent so far and returns what to write (and whether to
 * close), or null to wait for more; `afterMs` delays it. Every connection is destroyed on close().
 */
import net, { type AddressInfo } from 'node:net';

export interface RawAnswer {
  readonly data: string | Buffer;
  /** Close the connection after writing (default true). */
  readonly end?: boolean;
  readonly afterMs?: number;
}

export async function startRawServer(
  answer: (received: Buffer) => RawAnswer | null,
): Promise<{ port: number; connections: () => number; open: () => number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let count = 0;
  // Half-open: a client that ends its side (spamc does) still gets the scripted silence or answer.
  const server = net.createServer({ allowHalfOpen: true }, (sock) => {
    count++;
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    let received = Buffer.alloc(0);
    let answered = false;
    const consider = () => {
      if (answered) return;
      const a = answer(received);
      if (!a) return;
      answered = true;
      setTimeout(() => {
        if (sock.destroyed) return;
        if (a.end === false) sock.write(a.data);
        else sock.end(a.data);
      }, a.afterMs ?? 0);
    };
    sock.on('data', (d: Buffer) => {
      received = Buffer.concat([received, d]);
      consider();
    });
    sock.on('end', consider);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    connections: () => count,
    /** Connections not closed yet; one the client closed counts once the server wrote to it again. */
    open: () => sockets.size,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
