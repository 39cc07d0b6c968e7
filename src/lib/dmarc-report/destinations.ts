/**
 * Which report addresses of a DMARC record may receive reports (RFC 7489 7.1): an address in
 * the policy domain's own organization is used as is; one outside it only when the
 * destination publishes `<policy-domain>._report._dmarc.<destination-domain>` TXT starting
 * with `v=DMARC1`, so nobody can aim a flood of reports at a third party.
 *
 * "Own organization" is judged without a public-suffix list: the destination domain equals the
 * policy domain or lies below it. Anything else is checked in DNS (safe: a sibling of the same
 * organization that did not publish the record is skipped, never mailed unasked).
 * RFC 7489 7.1's rewrite of the destination through `rua=` in the authorizing record is not
 * followed: the address in the policy domain's record is the one used.
 *
 * Fails: never throws; a DNS failure of the authorization lookup is `temperror` for that
 * address (the caller tries again later rather than dropping the report).
 */
import type { DnsResolver } from '../dns';
import type { ReportUri } from './policy';

export type DestinationVerdict = 'internal' | 'authorized' | 'unauthorized' | 'temperror';

export function isInternal(policyDomain: string, destDomain: string): boolean {
  const p = policyDomain.toLowerCase();
  const d = destDomain.toLowerCase();
  return d === p || d.endsWith(`.${p}`);
}

/** One destination's verdict. */
export async function authorizeDestination(resolver: DnsResolver, policyDomain: string, uri: ReportUri, signal?: AbortSignal): Promise<DestinationVerdict> {
  if (isInternal(policyDomain, uri.domain)) return 'internal';
  const r = await resolver.query(`${policyDomain.toLowerCase()}._report._dmarc.${uri.domain}`, 'TXT', signal);
  if (r.kind === 'temperror') return 'temperror';
  if (r.kind !== 'answer') return 'unauthorized';
  return r.records.some((strings) => /^v\s*=\s*DMARC1\s*(;|$)/i.test(strings.join('').trim())) ? 'authorized' : 'unauthorized';
}

export interface Destinations {
  /** Addresses that may receive the report now. */
  readonly send: readonly ReportUri[];
  /** Addresses whose authorization could not be looked up: try again later. */
  readonly retry: readonly ReportUri[];
  readonly refused: readonly ReportUri[];
}

/** Sorts a record's rua (or ruf) addresses by verdict. */
export async function resolveDestinations(resolver: DnsResolver, policyDomain: string, uris: readonly ReportUri[], signal?: AbortSignal): Promise<Destinations> {
  const send: ReportUri[] = [];
  const retry: ReportUri[] = [];
  const refused: ReportUri[] = [];
  // All at once: a record's owner can make each lookup time out (a name server that never
  // answers), and one after another five of them would hold the report pass five times as long.
  const verdicts = await Promise.all(uris.map((uri) => authorizeDestination(resolver, policyDomain, uri, signal)));
  for (const [i, uri] of uris.entries()) {
    const v = verdicts[i];
    if (v === 'internal' || v === 'authorized') send.push(uri);
    else if (v === 'temperror') retry.push(uri);
    else refused.push(uri);
  }
  return { send, retry, refused };
}
