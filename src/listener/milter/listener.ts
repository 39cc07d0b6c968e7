/**
 * A milter listener (listener protocol: milter; docs/milter.md): a TCP server that Postfix
 * reaches through smtpd_milters / non_smtpd_milters = inet:127.0.0.1:PORT, one MilterSession
 * per connection, bound to the listener's bank like an SMTP listener (a reload swaps the
 * bank's context between messages). Above maxConnections a connection is closed at once and
 * Postfix applies milter_default_action. Closing stops accepting, closes idle connections,
 * and gives messages in flight shutdownGraceMs before the rest are cut.
 *
 *
 * Under the cluster each worker binds the port itself (SO_REUSEPORT) and the kernel spreads
 * the connections over the workers, instead of the primary accepting each one and handing it
 * over: Postfix opens a milter connection per SMTP session, and the hand-off cost about 0.4–0.8
 * ms of CPU per connection (bench/README.md, "Whole MTA"). A worker that dies takes the
 * connections it had not accepted yet with it (Postfix applies milter_default_action to those
 * sessions); the primary checks at start-up that no other process holds the port
 * (ports.ts), since sockets with SO_REUSEPORT would share it silently.
 *
 * Fails with LISTEN_FAILED when the address cannot be bound.
 */
import cluster from 'node:cluster';
import net, { type AddressInfo } from 'node:net';
import type { ListenerConfig } from '../../config/main-schema';
import { PostsealError } from '../../errors';
import type { Listener } from '../listener';
import type { SessionContext } from '../session';
import { MilterSession } from './session';

export async function startMilterListener(config: ListenerConfig, current: () => SessionContext): Promise<Listener> {
  const ctx = current();
  const sessions = new Set<MilterSession>();
  let draining = false;
  let next = 0;
  const prefix = `M${process.pid.toString(36)}${Date.now().toString(36)}`;
  const server = net.createServer((socket) => {
    if (draining || sessions.size >= config.maxConnections) {
      current().log.warn({ port: config.port, connections: sessions.size, draining }, 'milter connection refused');
      socket.destroy();
      return;
    }
    const session: MilterSession = new MilterSession(socket, `${prefix}.${(next++).toString(36)}`, config, current, () => sessions.delete(session));
    sessions.add(session);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new PostsealError('LISTEN_FAILED', `cannot listen on ${config.address}:${config.port}: ${err.message}`, { cause: err })));
    // Port 0 (tests) stays shared through the primary: each worker would get a port of its own.
    if (cluster.isWorker && config.port !== 0) server.listen({ port: config.port, host: config.address, reusePort: true, exclusive: true }, () => resolve());
    else server.listen(config.port, config.address, () => resolve());
  });
  server.on('error', (err) => current().log.warn({ err, port: config.port }, 'milter listener error'));
  const port = (server.address() as AddressInfo).port;
  ctx.log.info({ address: config.address, port, protocol: 'milter' }, 'listening');
  return {
    config,
    port,
    close: async () => {
      draining = true;
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
