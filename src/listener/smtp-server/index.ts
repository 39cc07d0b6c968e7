/**
 * Everything postseal changes in smtp-server, behind one version gate. smtp-server is pinned
 * exactly in package.json; each file here replaces or wraps a method of that release, says
 * why (with the measurement or the failure that made it necessary) and when to remove it:
 *
 * - data-phase.ts: the DATA parser (a tenth of the library's CPU);
 * - envelope-commands.ts: MAIL and RCPT read as written (the library decoded what Postfix
 *   needs back unchanged, and user+tag recipients bounced);
 * - xforward-helo.ts: XFORWARD HELO=[UNAVAILABLE] no longer forgets the EHLO name;
 * - greeting.ts: no 100 ms pause before the greeting;
 * - session-id.ts: session ids without an OpenSSL call per connection;
 * - reply-batching.ts: replies to pipelined commands in one write.
 *
 * A new smtp-server version stops postseal at load here, before any patch is applied: read
 * the files above against it, then raise REVIEWED_VERSION.
 */
import { version } from 'smtp-server/package.json';
import { installDataPhase } from './data-phase';
import { installEnvelopeCommands } from './envelope-commands';
import { installReplyBatching } from './reply-batching';
import { installXforwardHelo } from './xforward-helo';

export { useEnvelopeCommands, type EnvelopeHandlers } from './envelope-commands';
export { greetWithoutPause } from './greeting';
export { batchReplies } from './reply-batching';
export { sessionIdsWithoutRandomCalls } from './session-id';

export const REVIEWED_VERSION = '3.21.6';

if (version !== REVIEWED_VERSION) {
  throw new Error(`smtp-server differs from what src/listener/smtp-server/ was reviewed against: version ${REVIEWED_VERSION} (found ${version})`);
}
installDataPhase();
installEnvelopeCommands();
installXforwardHelo();
installReplyBatching();
