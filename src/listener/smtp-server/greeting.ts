/**
 * Greets without smtp-server's fixed pause. smtp-server (3.21.6, pinned in package.json)
 * waits 100 ms after accepting a connection before its 220 greeting, to catch clients that
 * talk first. postseal's clients are Postfix smtp processes on loopback, never early talkers,
 * and to them the pause is 100 ms on every connection: a Postfix without a connection cache
 * opens one per message, so each of its smtp processes was held to 10 messages a second
 * (bench/README.md has the figures with and without connection reuse).
 *
 * How: SMTPServer.connect(), called once per accepted socket, adds the new connection to
 * `server.connections` and starts it (init(), which arms the pause timer). We then call the
 * connection's connectionReady() at once, and make it run only once, so that the timer's
 * later call does nothing. Both methods are public in smtp-server's type declarations;
 * test/listener/greeting.test.ts fails if a new version greets late, twice, or not at all.
 * Left alone with implicit TLS or `maxClients`, where init() does more before the timer
 * (postseal's listeners use neither).
 */
import type { SMTPServer } from 'smtp-server';

type Connection = SMTPServer['connections'] extends Set<infer C> ? C : never;

export function greetWithoutPause(server: SMTPServer): void {
  if (server.options.secure || server.options.maxClients) return;
  const connect = server.connect.bind(server);
  server.connect = (socket, options) => {
    connect(socket, options);
    // A Set iterates in insertion order: the last connection is the one connect() just added.
    let newest: Connection | undefined;
    for (const c of server.connections) newest = c;
    if (!newest) return;
    const ready = newest.connectionReady.bind(newest);
    let started = false;
    newest.connectionReady = (next) => {
      if (started) return;
      started = true;
      ready(next);
    };
    newest.connectionReady();
  };
}
