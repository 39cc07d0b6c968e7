/**
 * The author of a message: the address(es) in its From field (RFC 5322 3.6.2) and their
 * domain as a lower-case A-label, the key of the DKIM signing table (and of DMARC, RFC 7489
 * 3.1). Raw 8-bit field bodies are read as UTF-8 (RFC 6532).
 */
import addressparser from 'nodemailer/lib/addressparser';
import { domainToASCII } from 'node:url';
import { getPublicSuffix } from 'tldts';
import { Message, type HeaderField } from '../transaction/message';

export interface Author {
  /** The address as written, domain part lower-cased. */
  readonly address: string;
  readonly domain: string;
}

/** The author of one From field; null when it holds no address with a domain, or addresses of different domains. */
export function authorOf(from: HeaderField): Author | null {
  const value = Buffer.from(Message.value(from), 'latin1').toString('utf8');
  const addresses = addressparser(value, { flatten: true }).map((a) => splitAddress(a.address));
  const first = addresses[0];
  if (!first || addresses.some((a) => a === null || a.domain !== first.domain)) return null;
  return first;
}

/** A From field longer than this is not parsed: real ones are a few hundred bytes. */
export const MAX_FROM_FIELD_BYTES = 16384;

export interface AuthorDomains {
  /** Each domain once, lower-case A-labels, in order; at most `limit` + 1 of them. */
  readonly domains: string[];
  /** Why the From fields cannot be read reliably (an address without a domain beside an "@", too long); null when they can. */
  readonly unparseable: string | null;
}

/**
 * Every author domain of a message (RFC 7489 6.6.1): the domains of all addresses in all From
 * fields, groups opened. A sender cannot hide a domain from DMARC behind a second From field,
 * a second address or a group, as each one is here; nor behind syntax that this parser and a
 * mail reader read differently: every <...@domain> outside quoted strings and comments counts
 * too, and a field with an "@" that yields an address without a domain is `unparseable`
 * ("ceo@paypal.com>", "ceo@paypal.com <x>"), which the dmarc stage refuses to pass.
 * Stops collecting after `limit` + 1 distinct domains, so a huge field costs no more.
 */
export function authorDomains(message: Message, limit: number): AuthorDomains {
  const domains = new Set<string>();
  let unparseable: string | null = null;
  const add = (domain: string) => {
    if (domains.size <= limit) domains.add(domain);
  };
  for (const from of message.get('from')) {
    const raw = Message.value(from);
    if (raw.length > MAX_FROM_FIELD_BYTES) {
      unparseable ??= `From field of ${raw.length} bytes`;
      continue;
    }
    const value = Buffer.from(raw, 'latin1').toString('utf8');
    let withoutDomain = 0;
    for (const a of addressparser(value, { flatten: true })) {
      const parsed = splitAddress(a.address ?? '');
      if (parsed) add(parsed.domain);
      else withoutDomain++;
      if (domains.size > limit) break;
    }
    const bare = withoutQuotesAndComments(value);
    for (const m of bare.matchAll(/<([^<>]*@[^<>]*)>/g)) {
      const parsed = splitAddress(m[1].trim());
      if (parsed) add(parsed.domain);
      else withoutDomain++;
    }
    if (withoutDomain > 0 && bare.includes('@')) unparseable ??= `From field not understood: ${value.slice(0, 80)}`;
  }
  return { domains: [...domains], unparseable };
}

/** The field text with quoted strings and comments (one level, as written in practice) taken out. */
function withoutQuotesAndComments(value: string): string {
  return value.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/\((?:[^()\\]|\\.)*\)/g, ' ');
}

/** local@domain with the domain as a lower-case A-label; null without a valid domain. */
export function splitAddress(address: string): Author | null {
  const at = address.lastIndexOf('@');
  if (at <= 0) return null;
  const domain = normalizeDomain(address.slice(at + 1));
  if (!domain?.includes('.')) return null;
  return { address: `${address.slice(0, at)}@${domain}`, domain };
}

/** Lower-case A-label without the root dot, or '' if it is not a domain name. */
export function normalizeDomain(name: string): string {
  return domainToASCII(name.replace(/\.$/, '')).toLowerCase();
}

/** A public suffix (com, co.uk, github.io): nobody owns every name under it. */
export function isPublicSuffix(domain: string): boolean {
  return getPublicSuffix(domain, { allowPrivateDomains: true }) === domain;
}
