/**
 * Signature options for one message: the bank's dkimSign.signature, overridden by the
 * first dkimSign.bySender entry that matches the author address (amavisd
 * @dkim_signature_options_bysender_maps). Patterns: user@example.com, example.com,
 * *.example.com.
 */
import type { DkimSignSettings } from './schema';
import type { Author } from '../../lib/author';

export type SignatureOptions = DkimSignSettings['signature'];

export function optionsFor(conf: DkimSignSettings, author: Author): SignatureOptions {
  const address = author.address.toLowerCase();
  for (const { senders, ...overrides } of conf.bySender) {
    if (senders.some((p) => matches(p.toLowerCase(), address, author.domain))) return { ...conf.signature, ...overrides };
  }
  return conf.signature;
}

function matches(pattern: string, address: string, domain: string): boolean {
  if (pattern.includes('@')) return pattern === address;
  if (pattern.startsWith('*.')) return domain.endsWith(pattern.slice(1));
  return pattern === domain;
}
