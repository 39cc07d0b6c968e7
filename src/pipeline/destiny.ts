/**
 * What the content stages (banned, virus, spam) share, in amavisd-new's vocabulary so a site
 * can carry its settings over: a category's destiny (amavisd `$final_virus_destiny` and
 * friends) and the recipient exceptions (`@virus_lovers_maps`, `@bypass_virus_checks_maps`,
 * ...), as schema fragments each stage puts in its own bank section, and the two lookups.
 *
 * Recipients of one message can disagree (one is a spam lover, one is not). amavisd splits
 * the delivery; a content filter that answers Postfix once per message cannot, so postseal
 * takes the strict side: an exception applies only when it covers every recipient of the
 * message. A site that wants amavisd's per-recipient result sets Postfix's
 * `<transport>_destination_recipient_limit = 1` for the filter transport, so each message
 * reaching postseal has one recipient (docs/content-checks.md). A list entry `user@domain`
 * matches `user<delimiter>ext@domain` too, with the bank's recipientDelimiter (Postfix's
 * recipient_delimiter, "+" by default; several characters are each a delimiter). signsMail
 * and SIGNING_DESTINIES are what the content stages' load checks refuse on signing banks.
 */
import { domainToASCII } from 'node:url';
import type { FromSchema } from 'json-schema-to-ts';
import { replies, type SmtpReply } from '../smtp/replies';
import type { Decision, NoticeCategory } from './stage';
import type { Transaction } from '../transaction/transaction';

/**
 * pass: deliver (with the category's header fields); reject: 5xx to Postfix, which bounces
 * (or refuses, before-queue); discard: 250 and dropped; quarantine: 250 and held whole in the
 * quarantine folder (src/quarantine/, docs/quarantine.md); bounce: 250 once a DSN with the
 * original header went to the envelope sender (src/notify/bounce.ts; none to the null sender).
 * A stage that must not bounce in some case (spam over amavisd's $sa_dsn_cutoff_level) turns
 * its bounce into a discard itself.
 */
export const DESTINIES = ['pass', 'reject', 'discard', 'quarantine', 'bounce'] as const;
export type Destiny = (typeof DESTINIES)[number];

export function destinySchema<D extends Destiny>(fallback: D, what: string) {
  return {
    type: 'string',
    enum: DESTINIES,
    default: fallback,
    description: `What happens to ${what} (amavisd $final_*_destiny): pass = delivered with the header fields that say so, reject = 5xx to Postfix, discard = accepted and dropped (logged), quarantine = accepted and held in the quarantine folder, not delivered (postseal quarantine release sends it on), bounce = accepted and dropped after a DSN with the original header went to the envelope sender through the bank notify target (none to the null sender).`,
  } as const;
}

/** An amavisd-style recipient lookup list (see matchesRecipient). */
export const recipientListSchema = {
  type: 'array',
  default: [],
  maxItems: 10000,
  items: { type: 'string', minLength: 1, maxLength: 320, pattern: '^[^\\s<>]+$' },
  description:
    'Recipients, amavisd lookup style: "user@example.org" (also matches user+anything@example.org), "user@" (that local part at any domain), "example.org" or "@example.org" (the domain), ".example.org" (the domain and every subdomain), "." (everyone). Case-insensitive; IDN domains may be written in Unicode.',
} as const;
export type RecipientList = FromSchema<typeof recipientListSchema>;

/** Postfix's usual `recipient_delimiter`; a bank's recipientDelimiter replaces it. */
export const DEFAULT_RECIPIENT_DELIMITER = '+';

/**
 * Whether a bank signs its mail (lists dkim-sign): an originating bank, whose outgoing virus or
 * spam must never leave signed (issue 15). The content stages' load checks refuse there every
 * setting that would deliver such mail unscanned or without a clear reply to the sender.
 */
export function signsMail(bank: { readonly stages: readonly string[] }): boolean {
  return bank.stages.includes('dkim-sign');
}

/**
 * The destinies a signing bank may give outgoing virus or spam: ones that stop the mail and
 * tell our user (reject: Postfix bounces to them; bounce: a DSN to them, a real sender here),
 * or hold it for the postmaster (quarantine). Not pass (signed malware or spam) and not
 * discard (a silent loss, no clear reply to a user whose account may be compromised).
 */
export const SIGNING_DESTINIES: readonly Destiny[] = ['reject', 'bounce', 'quarantine'];

interface CompiledList {
  readonly addresses: ReadonlySet<string>;
  readonly localParts: ReadonlySet<string>;
  readonly domains: ReadonlySet<string>;
  /** ".example.org" entries, stored without the dot. */
  readonly parents: readonly string[];
  readonly everyone: boolean;
}

const compiled = new WeakMap<readonly string[], CompiledList>();

function asciiDomain(d: string): string {
  const lower = d.toLowerCase().replace(/\.$/, '');
  return /[^\x00-\x7f]/.test(lower) ? domainToASCII(lower) || lower : lower;
}

function compile(list: readonly string[]): CompiledList {
  const addresses = new Set<string>();
  const localParts = new Set<string>();
  const domains = new Set<string>();
  const parents: string[] = [];
  let everyone = false;
  for (const raw of list) {
    const entry = raw.trim();
    if (entry === '.') everyone = true;
    else if (entry.startsWith('.')) parents.push(asciiDomain(entry.slice(1)));
    else if (entry.startsWith('@')) domains.add(asciiDomain(entry.slice(1)));
    else if (entry.endsWith('@')) localParts.add(entry.slice(0, -1).toLowerCase());
    else if (entry.includes('@')) {
      const at = entry.lastIndexOf('@');
      addresses.add(`${entry.slice(0, at).toLowerCase()}@${asciiDomain(entry.slice(at + 1))}`);
    } else domains.add(asciiDomain(entry));
  }
  return { addresses, localParts, domains, parents, everyone };
}

/**
 * Whether one address (as written in the envelope) is in the list. `delimiters`: each
 * character is a recipient delimiter, as in Postfix's recipient_delimiter (`user+tag@` and,
 * with "+-", `user-tag@` are looked up as `user@` too); the first one in the local part counts.
 */
export function matchesRecipient(list: readonly string[], address: string, delimiters = DEFAULT_RECIPIENT_DELIMITER): boolean {
  if (list.length === 0) return false;
  let c = compiled.get(list);
  if (!c) {
    c = compile(list);
    compiled.set(list, c);
  }
  if (c.everyone) return true;
  const at = address.lastIndexOf('@');
  if (at < 0) return false;
  const local = address.slice(0, at).toLowerCase();
  const domain = asciiDomain(address.slice(at + 1));
  const plus = local.startsWith('"') ? -1 : firstDelimiter(local, delimiters);
  const bare = plus > 0 ? local.slice(0, plus) : local;
  if (c.addresses.has(`${local}@${domain}`) || c.addresses.has(`${bare}@${domain}`)) return true;
  if (c.localParts.has(local) || c.localParts.has(bare)) return true;
  if (c.domains.has(domain)) return true;
  return c.parents.some((p) => domain === p || domain.endsWith(`.${p}`));
}

function firstDelimiter(local: string, delimiters: string): number {
  let first = -1;
  for (const d of delimiters) {
    const i = local.indexOf(d);
    if (i >= 0 && (first < 0 || i < first)) first = i;
  }
  return first;
}

/**
 * Whether the exception covers the message: every recipient is in the list (the strict side,
 * see above). The bank's recipientDelimiter applies when the transaction carries its bank.
 */
export function coversAllRecipients(list: readonly string[], tx: Pick<Transaction, 'envelope'> & { readonly bank?: { readonly recipientDelimiter?: string } }): boolean {
  const rcpts = tx.envelope.recipients;
  const delimiters = tx.bank?.recipientDelimiter ?? DEFAULT_RECIPIENT_DELIMITER;
  return rcpts.length > 0 && list.length > 0 && rcpts.every((r) => matchesRecipient(list, r.address, delimiters));
}

/**
 * The verdict's decision for a category's destiny; `pass` delivers with `fields` (a tag).
 * `reply` is the category's reject reply from smtp/replies.ts; `category` names the check for
 * the notices of a blocked message (none for a delivered one). `discardReply` is the 250 of a
 * discard, when a stage says why (a bounce it turned into a discard).
 */
export function destinyDecision(
  destiny: Destiny,
  reply: SmtpReply,
  fields: Decision['fields'] = [],
  category?: NoticeCategory,
  discardReply: SmtpReply = replies.discarded,
): Decision {
  switch (destiny) {
    case 'reject':
      return { action: 'reject', reply, category };
    case 'discard':
      return { action: 'discard', reply: discardReply, category };
    case 'quarantine':
      return { action: 'quarantine', category };
    case 'bounce':
      return { action: 'bounce', reply, category };
    default:
      return { action: 'tag', fields };
  }
}
