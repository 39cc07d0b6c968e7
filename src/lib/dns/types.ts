/**
 * What a DNS lookup can come back with. Failures are results, not exceptions (STYLE.md, after
 * mailauth): every check turns `temperror` into its own temperror, and NXDOMAIN and NODATA
 * stay apart because DMARC (RFC 9989 A.4) and SPF void lookups (RFC 7208 4.6.4) need both.
 */

/** The record data each supported type yields. TXT keeps its character-strings apart. */
export interface RecordData {
  A: string;
  AAAA: string;
  TXT: string[];
  MX: { exchange: string; priority: number };
  CNAME: string;
  PTR: string;
  NS: string;
}

export type RecordType = keyof RecordData;
export const recordTypes: readonly RecordType[] = ['A', 'AAAA', 'TXT', 'MX', 'CNAME', 'PTR', 'NS'];

export type DnsResult<T extends RecordType = RecordType> =
  | { readonly kind: 'answer'; readonly records: readonly RecordData[T][]; readonly ttlSec: number }
  | { readonly kind: 'nxdomain' }
  | { readonly kind: 'nodata' }
  /** No usable answer from any server: timeout, SERVFAIL, REFUSED, malformed reply. */
  | { readonly kind: 'temperror'; readonly reason: string };

export interface DnsResolver {
  query<T extends RecordType>(name: string, type: T, signal?: AbortSignal): Promise<DnsResult<T>>;
}
