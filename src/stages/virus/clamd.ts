/**
 * The clamd client of a bank's virus settings (virus.socket, or virus.host and virus.port;
 * the timeouts, chunk and size limits), for the stage and its probe.
 */
import { ClamdClient, type ClamdEndpoint } from '../../lib/clamd';
import type { VirusSettings } from './schema';

function endpointOf(s: VirusSettings): ClamdEndpoint {
  return s.host ? { host: s.host, port: s.port } : { socket: s.socket };
}

/** The bank's clamd client; `timeoutMs` shorter for a probe (probe.ts). */
export function clientFor(s: VirusSettings, timeoutMs = s.timeoutMs): ClamdClient {
  return new ClamdClient({
    endpoint: endpointOf(s),
    connectTimeoutMs: Math.min(s.connectTimeoutMs, timeoutMs),
    timeoutMs,
    chunkBytes: s.chunkBytes,
    maxStreamBytes: s.maxScanBytes,
    keepConnections: s.keepConnections,
  });
}
