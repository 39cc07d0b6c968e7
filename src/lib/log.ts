/**
 * The structured JSON logger (pino) on standard output. Key material never reaches it:
 * stages log findings and ids, and errors are serialised by pino's err serializer.
 */
import pino, { type Logger, type DestinationStream } from 'pino';

export type { Logger };

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino({ level, base: { service: 'postseal' }, timestamp: pino.stdTimeFunctions.isoTime }, destination ?? pino.destination(1));
}
