/**
 * The DNS subsystem: one resolver per process (main.ts), typed results, a mailauth adapter.
 */
export { createDnsResolver, parseServer, type DnsConfig } from './resolver';
export { mailauthResolver, type MailauthResolver } from './mailauth-resolver';
export type { DnsResolver, DnsResult, RecordData, RecordType } from './types';
