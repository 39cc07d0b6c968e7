/**
 * The milter listeners' ports, checked by the primary before it forks (cli/start-command.ts):
 * the workers bind them with SO_REUSEPORT (listener.ts), which would share a port that another
 * process holds with that process. Its own module, so the primary loads none of the message path.
 */
import net from 'node:net';
import type { ListenerConfig } from '../../config/main-schema';
import { PostsealError } from '../../errors';

/**
 * Each milter listener's address is bound once without SO_REUSEPORT and let go. A port that
 * another process holds (a postseal already running, or any other program) fails here with
 * LISTEN_FAILED, as it would without the cluster, instead of the workers' SO_REUSEPORT sockets
 * sharing it with that process.
 */
export async function assertMilterPortsFree(listeners: readonly ListenerConfig[]): Promise<void> {
  for (const l of listeners.filter((x) => x.protocol === 'milter' && x.port !== 0)) {
    const probe = net.createServer();
    await new Promise<void>((resolve, reject) => {
      probe.once('error', (err) =>
        reject(new PostsealError('LISTEN_FAILED', `cannot listen on ${l.address}:${l.port}: ${err.message} (is another postseal already running?)`, { cause: err })),
      );
      probe.listen({ port: l.port, host: l.address, exclusive: true }, () => resolve());
    });
    await new Promise<void>((resolve) => probe.close(() => resolve()));
  }
}
