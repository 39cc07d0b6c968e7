/**
 * Session ids without a call into OpenSSL's random generator per connection.
 *
 * Why: smtp-server (3.21.6, pinned exactly in package.json) names each connection in
 * SMTPServer#_handleProxy with 10 fresh random bytes; with Postfix opening a connection per
 * message that call was 3.6 % of a pass-through worker's CPU (bench/README.md). An id only
 * has to tell sessions apart in the logs (smtp-server's Received line, postseal's message
 * line): here it is a random prefix drawn once per listener and a counter, 16 base32
 * characters like the library's, unique across listeners, workers and restarts.
 *
 * Only listeners without the PROXY protocol take this path (all of postseal's); with useProxy
 * the library's own method still reads the header. The version is checked by data-phase.ts,
 * which replaces a private method of the same release. Remove when smtp-server's ids cost
 * about as little (`npm run bench -- --profile --paths nochecks --reuse no` tells).
 */
import { randomBytes } from 'node:crypto';
import type { SMTPServer } from 'smtp-server';

const COUNTER_DIGITS = 8;
const COUNTER_LIMIT = 32 ** COUNTER_DIGITS;

export function sessionIdsWithoutRandomCalls(server: SMTPServer): void {
  if (server.options.useProxy) return;
  // 40 random bits: 8 base32 characters.
  const prefix = BigInt(`0x${randomBytes(5).toString('hex')}`)
    .toString(32)
    .padStart(8, '0');
  let counter = 0;
  server._handleProxy = (socket, callback) => {
    counter = (counter + 1) % COUNTER_LIMIT;
    const id = prefix + counter.toString(32).padStart(COUNTER_DIGITS, '0');
    const ignore = !!server.options.ignoredHosts?.includes(socket.remoteAddress ?? '');
    // Deferred as in the library, so connect() runs in the same turn of the event loop as before.
    setImmediate(() => callback(null, { id, ignore }));
  };
}
