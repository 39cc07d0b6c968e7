/**
 * One smtp-server per configured port, bound to its policy bank (amavisd $interface_policy):
 * EHLO keywords per bank, SIZE announced and enforced while DATA streams, recipient limit,
 * XFORWARD believed only from xforwardTrustedNetworks, LMTP mode, optional STARTTLS.
 *
 * The session runs in step with a downstream transaction (session.ts), so every reply the
 * upstream gets is either the downstream's own or one of ours from smtp/replies.ts.
 * smtp-server's automatic enhanced codes are switched off for that reason: ours are written
 * into the reply text (Postfix reads them whether ENHANCEDSTATUSCODES was announced or not).
 */
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import type { ListenerConfig } from '../config/main-schema';
import { PostsealError } from '../errors';
import { replyError, replies } from '../smtp/replies';
import { batchReplies, greetWithoutPause, sessionIdsWithoutRandomCalls, useEnvelopeCommands } from './smtp-server';
import { SessionHandler, type SessionContext } from './session';

export interface Listener {
  readonly config: ListenerConfig;
  readonly port: number;
  /** Stops accepting, lets transactions in flight finish for shutdownGraceMs, then cuts the rest. */
  close(): Promise<void>;
}

/** Listener options come from the bank at start; a reload that changes them restarts the listener. */
export async function startListener(config: ListenerConfig, current: () => SessionContext): Promise<Listener> {
  const ctx = current();
  const bank = ctx.bank;
  const handler = new SessionHandler(config, current);
  const hidden = new Set(bank.discardEhloKeywords);
  const options: SMTPServerOptions = {
    name: ctx.hostname,
    banner: bank.greetingBanner,
    lmtp: config.protocol === 'lmtp',
    // A hidden SIZE is not announced at all (smtp-server would still announce a bare SIZE);
    // the limit is enforced while DATA is spooled either way (552 5.3.4 after the dot).
    size: hidden.has('SIZE') ? 0 : bank.maxMessageSizeBytes,
    hide8BITMIME: hidden.has('8BITMIME'),
    hideSMTPUTF8: hidden.has('SMTPUTF8'),
    hidePIPELINING: hidden.has('PIPELINING'),
    hideDSN: hidden.has('DSN'),
    hideENHANCEDSTATUSCODES: true,
    socketTimeout: bank.timeouts.socketIdleTimeoutMs,
    disableReverseLookup: true,
    authOptional: true,
    disabledCommands: config.tls ? ['AUTH'] : ['AUTH', 'STARTTLS'],
    useXForward: true,
    logger: false,
    closeTimeout: Math.max(ctx.shutdownGraceMs, 1),
    ...(config.tls
      ? {
          key: readFileSync(config.tls.keyFile),
          cert: readFileSync(config.tls.certFile),
          // smtp-server's own floor is TLSv1 (for very old clients); ours is the config's.
          minVersion: config.tls.minVersion,
          ...(config.tls.ciphers ? { ciphers: config.tls.ciphers } : {}),
        }
      : {}),
    onConnect: (session, cb) => {
      if (server.connections.size > config.maxConnections) return cb(replyError(replies.tooManyConnections));
      if (handler.draining) return cb(replyError(replies.shuttingDown));
      handler.open(session);
      cb();
    },
    onData: (stream, session, cb) => handler.data(stream, session).then((result) => cb(null, result), cb),
    onClose: (session) => handler.close(session),
  };
  const server = new SMTPServer(options);
  useEnvelopeCommands(server, {
    announced: { eightbitmime: !hidden.has('8BITMIME'), dsn: !hidden.has('DSN'), smtputf8: !hidden.has('SMTPUTF8'), size: hidden.has('SIZE') ? 0 : bank.maxMessageSizeBytes },
    mail: (cmd, session) => handler.mailFrom(cmd, session),
    rcpt: (cmd, session) => handler.rcptTo(cmd, session),
    refused: (verb, refusal, line, session) => handler.refused(verb, refusal, line, session),
  });
  greetWithoutPause(server);
  sessionIdsWithoutRandomCalls(server);
  // Only where PIPELINING is announced; with it hidden, clients do not pipeline.
  if (!hidden.has('PIPELINING')) batchReplies(server);
  // smtp-server passes its socket's errors on as its own: a failed bind is LISTEN_FAILED, said
  // once by start-up without a stack, not also logged here as a listener error.
  const ignoreBindError = () => undefined;
  server.on('error', ignoreBindError);
  await new Promise<void>((resolve, reject) => {
    server.server.once('error', (err: Error) => reject(new PostsealError('LISTEN_FAILED', `cannot listen on ${config.address}:${config.port}: ${err.message}`, { cause: err })));
    server.listen(config.port, config.address, () => resolve());
  });
  server.off('error', ignoreBindError);
  server.on('error', (err) => ctx.log.warn({ err, port: config.port }, 'smtp listener error'));
  const port = (server.server.address() as AddressInfo).port;
  ctx.log.info({ address: config.address, port, protocol: config.protocol }, 'listening');
  return {
    config,
    port,
    close: async () => {
      handler.draining = true;
      // Connections between transactions (Postfix's connection cache) go at once.
      for (const c of server.connections) if (!handler.busy(c.session.id)) c.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await handler.idle();
    },
  };
}
