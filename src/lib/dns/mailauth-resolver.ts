/**
 * Our resolver in the shape mailauth expects (`dns.promises.resolve(name, type)`): records
 * on success, an Error with node:dns's code otherwise. mailauth maps ENOTFOUND and ENODATA
 * to "no record" (and SPF void lookups) and every other code to temperror, so the typed
 * results survive the trip through its exception-based interface.
 */
import type { DnsResolver, RecordType } from './types';
import { recordTypes } from './types';

export type MailauthResolver = (name: string, type: string) => Promise<unknown[]>;

export function mailauthResolver(resolver: DnsResolver, signal?: AbortSignal): MailauthResolver {
  return async (name, type) => {
    const rrtype = type.toUpperCase() as RecordType;
    if (!recordTypes.includes(rrtype)) throw dnsError('ENOTIMP', `record type ${type} not supported`, name);
    const r = await resolver.query(name, rrtype, signal);
    switch (r.kind) {
      case 'answer':
        return [...r.records];
      case 'nxdomain':
        throw dnsError('ENOTFOUND', 'NXDOMAIN', name);
      case 'nodata':
        throw dnsError('ENODATA', 'no data', name);
      default:
        throw dnsError('ESERVFAIL', r.reason, name);
    }
  };
}

/** mailauth reads only the code: a stack trace for every "no such record" was 2 % of the inbound path's CPU. */
function dnsError(code: string, text: string, name: string): Error {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return Object.assign(new Error(`${code} ${name}: ${text}`), { code, hostname: name });
  } finally {
    Error.stackTraceLimit = limit;
  }
}
