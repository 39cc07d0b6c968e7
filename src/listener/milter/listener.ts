/**
 * A milter listener (listener protocol: milter; docs/milter.md): a TCP server that Postfix
 * reaches through smtpd_milters / non_smtpd_milters = inet:127.0.0.1:PORT, one MilterSession
 * per connection, bound to the listener's bank like an SMTP listener (a reload swaps the
 * bank's context between messages). Above maxConnections a connection is closed at once and
 * Postfix applies milter_default_action; in a cluster's worker on the primary's socket it is
 * handed to another worker with room first (`overflow`, cluster/handoff.ts), so connections
 * are accepted paused and resumed once a session takes them. Closing stops accepting, closes
 * idle connections, and gives messages in flight shutdownGraceMs before the rest are cut. The listening socket
 * comes from `sockets` (listen-sockets.ts): its own in one process, the primary's in a cluster.
 *
 * Fails with LISTEN_FAILED when the address cannot be bound.
 */
import net, { type AddressInfo } from 'node:net';
import type { ListenerConfig } from '../../config/main-schema';
import { PostsealError } from '../../errors';
import type { Listener } from '../listener';
import { ownSockets, type ListenSockets, type Overflow } from '../listen-sockets';
import type { SessionContext } from '../session';
import { MilterSession } from './session';

/** `slot`: the listener's position in the configuration (which port-0 listeners of a cluster's workers share a socket). */
export async function startMilterListener(config: ListenerConfig, current: () => SessionContext, sockets: ListenSockets = ownSockets, slot = 0): Promise<Listener> {
  const ctx = current();
  const sessions = new Set<MilterSession>();
  let draining = false;
  let next = 0;
  const prefix = `M${process.pid.toString(36)}${Date.now().toString(36)}`;
  // Set once listening, in a cluster's worker on the primary's socket (cluster/handoff.ts).
  let overflow: Overflow | undefined;
  let full = false;
  const roomChanged = () => {
    if (full === sessions.size >= config.maxConnections) return;
    full = !full;
    if (!draining) overflow?.room(!full);
  };
  // `handed`: another worker's surplus, passed on once only (two full workers cannot bounce it).
  const accept = (socket: net.Socket, handed: boolean) => {
    const refused = (extra: Record<string, unknown> = {}) =>
      current().log.warn({ port: config.port, connections: sessions.size, draining, ...(handed ? { handed } : {}), ...extra }, 'milter connection refused');
    if (draining || sessions.size >= config.maxConnections) {
      if (overflow && !draining && !handed) {
        overflow.pass(socket, config.maxConnections).catch((err: Error) => refused({ reason: `could not hand it to another worker: ${err.message}` }));
        return;
      }
      refused();
      socket.destroy();
      return;
    }
    const session: MilterSession = new MilterSession(socket, `${prefix}.${(next++).toString(36)}`, config, current, () => {
      if (sessions.delete(session)) roomChanged();
    });
    sessions.add(session);
    roomChanged();
    socket.resume();
  };
  // Paused: a connection handed to another worker must not have had its first bytes read here.
  const server = net.createServer({ pauseOnConnect: true }, (socket) => accept(socket, false));
  try {
    await sockets.listen(server, { address: config.address, port: config.port, slot });
  } catch (err) {
    throw new PostsealError('LISTEN_FAILED', `cannot listen on ${config.address}:${config.port}: ${(err as Error).message}`, { cause: err });
  }
  server.on('error', (err) => current().log.warn({ err, port: config.port }, 'milter listener error'));
  overflow = sockets.overflow?.({ address: config.address, port: config.port, slot }, (socket) => accept(socket, true));
  const port = (server.address() as AddressInfo).port;
  ctx.log.info({ address: config.address, port, protocol: 'milter' }, 'listening');
  return {
    config,
    port,
    close: async () => {
      draining = true;
      overflow?.end();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sessions) s.closeWhenIdle();
      const inFlight = Promise.all([...sessions].map((s) => s.busy));
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, Math.max(current().shutdownGraceMs, 1));
      });
      await Promise.race([inFlight, grace]);
      clearTimeout(timer);
      for (const s of sessions) s.destroy();
      await closed;
    },
  };
}
