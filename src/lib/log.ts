/**
 * The structured JSON logger (pino) on standard output. Key material never reaches it:
 * stages log findings and ids, and errors are serialised by pino's err serializer.
 *
 * Lines are written in blocks of up to 4 KiB, each at most FLUSH_MS after it was made or after
 * the write ahead of it ended: a
 * write system call per message was 6 % of a pass-through worker's CPU (bench/README.md).
 * pino writes what is left when the process exits, and at once for a fatal line; a process
 * killed with SIGKILL loses at most the last FLUSH_MS of lines.
 */
import pino, { type Logger, type DestinationStream } from 'pino';
import { isPostsealError } from '../errors';

export type { Logger };

const BLOCK_BYTES = 4096;
const FLUSH_MS = 200;

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino({ level, base: { service: 'postseal' }, timestamp: pino.stdTimeFunctions.isoTime }, destination ?? bufferedStdout());
}

function bufferedStdout(): DestinationStream {
  const out = pino.destination({ dest: 1, minLength: BLOCK_BYTES, sync: false });
  // A flush FLUSH_MS after a line came or a write ended (one can leave lines behind it), not a
  // timer every FLUSH_MS: sonic-boom flushes an empty buffer with a write of zero bytes through
  // the thread pool, and the timer and that write woke an idle process ten times a second.
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    timer = undefined;
    try {
      out.flush();
    } catch {
      // Closed at exit, after its last lines were written.
    }
  };
  const soon = () => {
    if (!timer) timer = setTimeout(flush, FLUSH_MS).unref();
  };
  // Lines made since the last write ended. A flush while a write is under way does nothing, and
  // that write may be the empty one of an earlier flush (zero bytes, held up behind a busy thread
  // pool): the lines made meanwhile wait for the next flush, which is due after it ends.
  let made = 0;
  const write = out.write.bind(out);
  out.write = (data: string) => {
    made++;
    soon();
    return write(data);
  };
  out.on('write', (bytes: number) => {
    if (bytes > 0 || made > 0) soon();
    made = 0;
  });
  return out;
}

/**
 * How an error goes into a log line. Our own errors (downstream refused, timeouts, spool) are
 * expected events with a stable code: code and message, no stack trace; so are a peer's
 * network errors (errno and message). Anything else is a
 * bug or a surprise and keeps pino's full serialisation (type, message, stack, cause).
 */
export function errorFields(err: unknown): Record<string, unknown> {
  if (isPostsealError(err)) return { code: err.code, error: err.message };
  const errno = (err as NodeJS.ErrnoException | null)?.code;
  if (typeof errno === 'string' && NETWORK_ERRNOS.has(errno)) return { errno, error: (err as Error).message };
  return { err };
}

/** A peer that is down or went away: expected on a network, so no stack trace either. */
const NETWORK_ERRNOS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTFOUND']);
