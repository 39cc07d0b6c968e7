/**
 * A unix socket file that a dead postseal left behind makes listen() fail with EADDRINUSE. It
 * is removed only when nothing answers on it (a live postseal's socket is never taken), and
 * only if it is a socket (a path naming another file stays an error). Run by the process that
 * binds the path: the single process, or a cluster's primary before it forks the workers (the
 * primary binds a unix path for all of them).
 */
import { lstatSync, rmSync } from 'node:fs';
import net from 'node:net';

export async function removeStaleSocket(file: string): Promise<boolean> {
  if (!lstatSync(file, { throwIfNoEntry: false })?.isSocket()) return false;
  const alive = await new Promise<boolean>((resolve) => {
    const probe = net.connect(file);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive) return false;
  rmSync(file, { force: true });
  return true;
}
