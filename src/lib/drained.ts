/**
 * Waiting for a socket to take more: 'drain', or 'close' when the socket is destroyed while
 * we wait (a timeout or an abort), since 'drain' never comes then. For the scanner clients'
 * sends (lib/clamd, lib/spamd), which hold back a message while the scanner reads slowly.
 */
import type net from 'node:net';

/** Resolves once the socket takes more (drained) or is gone; at once when it need not wait. */
export function drained(socket: net.Socket): Promise<void> {
  if (socket.destroyed || !socket.writableNeedDrain) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}
