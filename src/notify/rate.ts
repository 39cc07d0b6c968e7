/**
 * Hourly limits on the mail postseal writes about messages (main config notify.maxDsnPerHour,
 * notify.maxPerSenderDomainPerHour, notify.maxNoticesPerHour), counted in the shared store
 * (store/store.ts increment: fixed one-hour windows, shared by every worker and host on the
 * store). A flood of blocked mail with forged senders must not become a flood of backscatter.
 * Fixed windows: up to twice a limit can go in the minutes around the start of a window; the
 * limits bound the hourly volume, they are no exact sliding count.
 *
 * Over a limit the mail is not sent; the caller logs it and handles the message as its
 * verdict says: a bounce over the limit is held in quarantine when the bank's listener has one
 * (listener/blocked.ts), else dropped with a warning.
 * Only accepted mail is counted (countSent), once per message. The store unreachable: a
 * DSN is tempfailed (fail closed), a notice is sent with a warning (owed to the postmaster).
 */
import { PostsealError } from '../errors';
import type { Logger } from '../lib/log';
import type { Store } from '../store/store';

const HOUR_MS = 3600_000;

export interface RateLimits {
  readonly maxDsnPerHour: number;
  readonly maxPerSenderDomainPerHour: number;
  readonly maxNoticesPerHour: number;
}

/**
 * What is counted: DSNs, or the notices of one audience. Each audience has its own count
 * against maxNoticesPerHour: anyone can make us write admin and recipient notices (a flood of
 * viruses from forged senders), and one shared count let that flood silence the notices an
 * authenticated sender is owed about its own banned file, and the other way round.
 */
export type RateKind = 'dsn' | 'notice:admin' | 'notice:recipient' | 'notice:sender';

/**
 * The limit this mail would go over, or null when it may be sent. Only reads the counters:
 * a mail is counted (countSent) once it was accepted, so a send that failed (a 451 retry
 * during a notify outage) uses up nothing, and a retry sends nothing twice (the DSN and
 * notice records). The store unreachable: a DSN is tempfailed (NOTIFY_FAILED: without the
 * count a forged flood would become backscatter), a notice sent with a warning.
 */
export async function overLimit(store: Store, limits: RateLimits, kind: RateKind, senderDomain: string | undefined, log: Logger): Promise<string | null> {
  try {
    const count = async (key: string) => Number((await store.get(key)) ?? 0);
    if (senderDomain && (await count(domainKey(kind, senderDomain))) >= limits.maxPerSenderDomainPerHour)
      return `notify.maxPerSenderDomainPerHour (${limits.maxPerSenderDomainPerHour}) for ${senderDomain}`;
    const max = kind === 'dsn' ? limits.maxDsnPerHour : limits.maxNoticesPerHour;
    if ((await count(`notify-rate:${kind}`)) < max) return null;
    return kind === 'dsn' ? `notify.maxDsnPerHour (${max})` : `notify.maxNoticesPerHour (${max}) for ${kind.slice('notice:'.length)} notices`;
  } catch (err) {
    if (kind === 'dsn')
      throw new PostsealError('NOTIFY_FAILED', `cannot count DSNs in the store (${(err as Error).message}); tempfailed rather than sent unlimited`, { cause: err });
    log.warn({ err }, 'cannot count notices in the store; sending without the hourly limit');
    return null;
  }
}

/** Counts one accepted mail of this kind (and to this sender domain); a store failure is logged. */
export async function countSent(store: Store, kind: RateKind, senderDomain: string | undefined, log: Logger): Promise<void> {
  try {
    if (senderDomain) await store.increment(domainKey(kind, senderDomain), 1, { ttlMs: HOUR_MS });
    await store.increment(`notify-rate:${kind}`, 1, { ttlMs: HOUR_MS });
  } catch (err) {
    log.warn({ err }, 'cannot count a sent notice or DSN in the store');
  }
}

/**
 * The count of mail to one sender domain, DSNs apart from sender notices: a DSN goes to
 * whatever sender a message claims, so a flood of bounces of forged senders of a domain used up
 * its count and silenced the notices its authenticated senders are owed (kept the DSN's old key).
 */
function domainKey(kind: RateKind, senderDomain: string): string {
  return `notify-rate:sender:${kind === 'dsn' ? '' : `${kind}:`}${senderDomain.toLowerCase()}`;
}

/** The domain of an address, lower-case; undefined for the null sender or no domain. */
export function domainOf(address: string): string | undefined {
  const at = address.lastIndexOf('@');
  return at > 0 ? address.slice(at + 1).toLowerCase() : undefined;
}
