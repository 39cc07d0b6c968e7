/**
 * Hourly limits on the mail postseal writes about messages (main config notify.maxDsnPerHour,
 * notify.maxPerSenderDomainPerHour, notify.maxNoticesPerHour), counted in the shared store
 * (store/store.ts increment: fixed one-hour windows, shared by every worker and host on the
 * store). A flood of blocked mail with forged senders must not become a flood of backscatter.
 *
 * Over a limit the mail is not sent; the caller logs it and handles the message as its
 * verdict says (never lost: a bounce is then a discard with a log line).
 * The store unreachable: counted as under the limit with a warning (the notice or DSN is
 * owed; a store outage should not silence it).
 */
import type { Logger } from '../lib/log';
import type { Store } from '../store/store';

const HOUR_MS = 3600_000;

export interface RateLimits {
  readonly maxDsnPerHour: number;
  readonly maxPerSenderDomainPerHour: number;
  readonly maxNoticesPerHour: number;
}

export type RateKind = 'dsn' | 'notice';

/**
 * Counts one more mail of this kind (and to this sender domain, when given); the limit it
 * went over, or null when it may be sent.
 */
export async function overLimit(store: Store, limits: RateLimits, kind: RateKind, senderDomain: string | undefined, log: Logger): Promise<string | null> {
  try {
    if (senderDomain) {
      const n = await store.increment(`notify-rate:sender:${senderDomain.toLowerCase()}`, 1, { ttlMs: HOUR_MS });
      if (n > limits.maxPerSenderDomainPerHour) return `notify.maxPerSenderDomainPerHour (${limits.maxPerSenderDomainPerHour}) for ${senderDomain}`;
    }
    const max = kind === 'dsn' ? limits.maxDsnPerHour : limits.maxNoticesPerHour;
    const n = await store.increment(`notify-rate:${kind}`, 1, { ttlMs: HOUR_MS });
    return n > max ? `notify.${kind === 'dsn' ? 'maxDsnPerHour' : 'maxNoticesPerHour'} (${max})` : null;
  } catch (err) {
    log.warn({ err }, 'cannot count notices in the store; sending without the hourly limit');
    return null;
  }
}

/** The domain of an address, lower-case; undefined for the null sender or no domain. */
export function domainOf(address: string): string | undefined {
  const at = address.lastIndexOf('@');
  return at > 0 ? address.slice(at + 1).toLowerCase() : undefined;
}
