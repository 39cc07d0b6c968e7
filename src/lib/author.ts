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

/**
 * Every author domain of a message (RFC 7489 6.6.1): the domains of all addresses in all From
 * fields, groups opened, lower-case A-labels, each once, in order. `unusable` counts addresses
 * with no domain this can read; a sender cannot hide a domain from DMARC behind a second From
 * field, a second address or a group, as each one is here.
 */
export function authorDomains(message: Message): { domains: string[]; unusable: number } {
  const domains: string[] = [];
  let unusable = 0;
  for (const from of message.get('from')) {
    const value = Buffer.from(Message.value(from), 'latin1').toString('utf8');
    for (const a of addressparser(value, { flatten: true })) {
      const parsed = splitAddress(a.address ?? '');
      if (!parsed) unusable++;
      else if (!domains.includes(parsed.domain)) domains.push(parsed.domain);
    }
  }
  return { domains, unusable };
}

/** local@domain with the domain as a lower-case A-label; null without a valid domain. */
export function splitAddress(address: string): Author | null {
  const at = address.lastIndexOf('@');
  if (at <= 0) return null;
  const domain = normalizeDomain(address.slice(at + 1));
  if (!domain || !domain.includes('.')) return null;
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
