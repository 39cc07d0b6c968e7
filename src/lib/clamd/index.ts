/**
 * The clamd client (client.ts) and the meaning of its answers (reply.ts).
 */
export { ClamdClient, type ClamdEndpoint, type ClamdOptions } from './client';
export { MAX_NAMES, printable, type ClamdFailure, type FailureReason, type ScanResult } from './reply';
