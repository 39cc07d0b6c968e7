/**
 * The DMARC record a report is about and where its reports go (RFC 7489 6.3, 7.1, 7.2): the
 * report sender looks the record up again when it builds a report, so policy_published shows
 * what the domain publishes now and the rua/ruf addresses are current.
 *
 * Reads the `_dmarc.<domain>` TXT record through our resolver (src/lib/dns). Tags kept:
 * v, p, sp, adkim, aspf, pct, fo, ri, rua, ruf. `ri=` (seconds, a 32-bit unsigned integer)
 * is kept as requested (86400 when absent or not a number); what report period it gives is
 * decided when the result is stored (period.ts, store/dmarc-results.ts).
 * A `mailto:` URI's `!10m` suffix is a size limit (7.1). Duplicate addresses are dropped and
 * only the first MAX_REPORT_URIS are kept.
 *
 * Fails: never throws; a DNS failure is `{ kind: 'temperror' }` (try again later), no record
 * or no valid one is `{ kind: 'none' }`.
 */
import { getDomain } from 'tldts';
import type { DnsResolver } from '../dns';

export type Disposition = 'none' | 'quarantine' | 'reject';

export interface PublishedPolicy {
  readonly domain: string;
  readonly p: Disposition;
  readonly sp: Disposition;
  readonly adkim: 'r' | 's';
  readonly aspf: 'r' | 's';
  readonly pct: number;
  readonly fo: string;
  /** The requested interval between aggregate reports in seconds (`ri=`, default 86400). */
  readonly intervalSec: number;
  readonly rua: readonly ReportUri[];
  readonly ruf: readonly ReportUri[];
}

export interface ReportUri {
  /** The mailbox, as written after `mailto:` (percent-decoded). */
  readonly address: string;
  /** Its domain, lower case. */
  readonly domain: string;
  /** From a `!<n>[kmgt]` suffix: reports larger than this are not sent there. */
  readonly maxBytes?: number;
}

/** Report addresses used per record at most (the rest are ignored); mature reporters use 2 to 5. */
export const MAX_REPORT_URIS = 5;
/** RFC 7489 6.3: ri's default. */
export const DEFAULT_INTERVAL_SEC = 86400;

const DOT_ATOM = /^[A-Za-z0-9#$&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9#$&'*+/=?^_`{|}~-]+)*$/;
const HOST_NAME = /^(?=.{1,253}\.?$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$/;

/** A DNS host name in letters, digits and hyphens: what a report's file name and Subject may carry. */
export function isHostName(name: string): boolean {
  return HOST_NAME.test(name);
}

const dispositions: readonly Disposition[] = ['none', 'quarantine', 'reject'];
const units: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** One `mailto:` URI; anything else (other schemes, no domain) is null and ignored (7.1). */
export function parseReportUri(raw: string): ReportUri | null {
  const m = /^mailto:([^!]+?)(?:!(\d+)([kmgt]?))?$/i.exec(raw.trim());
  if (!m) return null;
  let address: string;
  try {
    address = decodeURIComponent(m[1]);
  } catch {
    return null;
  }
  const at = address.lastIndexOf('@');
  // Strict: a dot-atom local part and a host name. Postfix reads %, ! and quotes as routing,
  // and a report must go only where the record's owner named (7.1).
  // RFC 5321 4.5.3.1.1: a local part is at most 64 octets (a longer one also made the To: of
  // the report mail longer than a line may be).
  if (at < 1 || at > 64 || !DOT_ATOM.test(address.slice(0, at)) || !HOST_NAME.test(address.slice(at + 1))) return null;
  const maxBytes = m[2] === undefined ? undefined : Number(m[2]) * units[(m[3] ?? '').toLowerCase()];
  // A root dot (`a@example.org.`) names the same mailbox: dropped, so that the address is
  // written as every other is and a record listing both forms gets one report, not two.
  const host = address.slice(at + 1).replace(/\.$/, '');
  return { address: `${address.slice(0, at)}@${host}`, domain: host.toLowerCase(), maxBytes };
}

/** The tags of a DMARC record, or null when it is not one (no leading v=DMARC1 or no p=). */
function parseTags(txt: string): Map<string, string> {
  const tags = new Map<string, string>();
  for (const part of txt.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    tags.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim());
  }
  return tags;
}

/** The organizational domain (RFC 7489 3.2): the registrable domain by the public suffix list (tldts). */
export function orgDomain(domain: string): string {
  const d = domain.toLowerCase();
  return getDomain(d, { allowPrivateDomains: true }) ?? d;
}

/** `ri=` of a record's tags: digits only and at most 2^32-1 (RFC 7489 6.3), else the default. */
function intervalOf(tags: Map<string, string>): number {
  const ri = tags.get('ri');
  return ri !== undefined && /^\d{1,10}$/.test(ri) && Number(ri) <= 0xffffffff ? Number(ri) : DEFAULT_INTERVAL_SEC;
}

/** The requested interval of a DMARC record's text (the dmarc stage's, for the stored result's period). */
export function requestedIntervalSec(txt: string): number {
  return intervalOf(parseTags(txt));
}

export function parseDmarcRecord(domain: string, txt: string): PublishedPolicy | null {
  const tags = parseTags(txt);
  if (!/^v\s*=\s*DMARC1\s*(;|$)/i.test(txt.trim())) return null;
  // RFC 7489 6.6.3: a record without a valid p= but with a rua= is read as p=none, so the
  // domain still gets its reports; without either there is nothing to apply or send.
  const p = dispositions.find((d) => d === tags.get('p')?.toLowerCase()) ?? (tags.has('rua') ? 'none' : undefined);
  if (!p) return null;
  const sp = dispositions.find((d) => d === tags.get('sp')?.toLowerCase()) ?? p;
  const align = (v: string | undefined): 'r' | 's' => (v?.toLowerCase() === 's' ? 's' : 'r');
  // RFC 7489 6.3 pct = 1*3DIGIT, 0 to 100; anything else is its default (100). Number() alone
  // read `pct=` as 0 and `pct=0x32` as 50, so policy_published showed what nobody published.
  const pctTag = tags.get('pct') ?? '100';
  const pct = /^\d{1,3}$/.test(pctTag) && Number(pctTag) <= 100 ? Number(pctTag) : 100;
  // A hostile record may list thousands of addresses: each costs a DNS check and a RCPT.
  // Duplicates (compared without case) go, and only the first MAX_REPORT_URIS are used.
  const uris = (v: string | undefined) => {
    const seen = new Set<string>();
    const out: ReportUri[] = [];
    for (const raw of (v ?? '').split(',')) {
      const u = parseReportUri(raw);
      if (!u || seen.has(u.address.toLowerCase())) continue;
      seen.add(u.address.toLowerCase());
      out.push(u);
      if (out.length === MAX_REPORT_URIS) break;
    }
    return out;
  };
  return {
    domain: domain.toLowerCase(),
    p,
    sp,
    adkim: align(tags.get('adkim')),
    aspf: align(tags.get('aspf')),
    pct,
    fo: tags.get('fo') || '0',
    intervalSec: intervalOf(tags),
    rua: uris(tags.get('rua')),
    ruf: uris(tags.get('ruf')),
  };
}

export type PolicyLookup = { kind: 'found'; policy: PublishedPolicy } | { kind: 'none' } | { kind: 'temperror'; reason: string };

/** The policy domain's current record (exactly one valid DMARC record, RFC 7489 6.6.3). */
export async function fetchPolicy(resolver: DnsResolver, domain: string, signal?: AbortSignal): Promise<PolicyLookup> {
  const r = await resolver.query(`_dmarc.${domain}`, 'TXT', signal);
  if (r.kind === 'temperror') return { kind: 'temperror', reason: r.reason };
  if (r.kind !== 'answer') return { kind: 'none' };
  const found = r.records.map((strings) => parseDmarcRecord(domain, strings.join(''))).filter((p): p is PublishedPolicy => p !== null);
  return found.length === 1 ? { kind: 'found', policy: found[0] } : { kind: 'none' };
}
