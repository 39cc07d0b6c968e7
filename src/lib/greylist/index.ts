/**
 * Greylisting (the technique of Harris, 2003; behaviour of postgrey 1.37's smtpd_access_policy)
 * over postseal's shared store (store/store.ts, passed in as a GreylistStore), so every worker and, with Redis, every host
 * sees the same triplets: a retry that reaches another instance passes.
 *
 * A triplet (triplet.ts) first seen at `first` passes once `delaySec` have gone by; retries
 * sooner are greylisted again with the seconds still missing. A triplet that has not passed and
 * is not retried within `retryWindowSec` starts over; one that passed is kept `maxAgeDays`
 * after its last use. Each first pass of a client's triplet (at most one an hour) counts
 * towards the client's auto-whitelisting: after `autoWhitelistClients` of them, all its mail
 * passes (0 turns this off). Listed clients and recipients pass without a lookup.
 *
 * Store keys: "greylist:t:<triplet>" = "first,last" (seconds), "greylist:c:<address>" =
 * "count,last", "greylist:n:<client>:<hour>" = new triplets of the client (its IPv4 address, its
 * IPv6 network) that hour, capped by `maxNewTripletsPerClientHour` (past it, a new triplet is
 * greylisted unstored). Long triplets are stored as their SHA-256 (store keys are capped).
 * Two instances racing on a new triplet both see the same first-seen time (setIfAbsent);
 * concurrent updates of an existing one are last-writer-wins on `last`, which only moves the
 * expiry, never the decision.
 *
 * Failures: a read that fails, or a write that the decision needs (a new triplet's first
 * sighting), passes the store's STORE_UNAVAILABLE rejection through (the service answers
 * DEFER_IF_PERMIT for it: the triplet would have been greylisted anyway). A write that only
 * keeps the state of a triplet or client that passes (its last use, its first pass, the
 * client's count) does not turn the pass into a deferral: a store whose disk is full still
 * reads, and known senders' mail goes on; the outcome carries the error (`unsaved`) for the
 * caller to log.
 */
import { createHash } from 'node:crypto';
import { clientNetwork, tripletKey } from './triplet';
import type { ClientWhitelist, RecipientWhitelist } from './whitelist';

export { clientNetwork, normaliseSender, tripletKey } from './triplet';
export { parseClientWhitelist, parseRecipientWhitelist, WhitelistSyntaxError, type ClientWhitelist, type RecipientWhitelist, type WhitelistSource } from './whitelist';

/**
 * The part of store/store.ts's Store that greylisting uses (lib/ sits below store/, so it names
 * the methods instead of importing the interface; a Store is one).
 */
export interface GreylistStore {
  get(key: string): Promise<string | undefined>;
  set(key: string, value: string, opts?: { readonly ttlMs?: number }): Promise<void>;
  setIfAbsent(key: string, value: string, opts?: { readonly ttlMs?: number }): Promise<boolean>;
  increment(key: string, by?: number, opts?: { readonly ttlMs?: number }): Promise<number>;
}

export interface GreylistSettings {
  readonly delaySec: number;
  readonly retryWindowSec: number;
  readonly maxAgeDays: number;
  readonly ipv4PrefixBits: number;
  readonly ipv6PrefixBits: number;
  /** Passes needed before a client is whitelisted; 0 = never. */
  readonly autoWhitelistClients: number;
  /** New triplets stored per client (IPv4 address, IPv6 network) and hour; past it, greylisted unstored. 0 = no cap. */
  readonly maxNewTripletsPerClientHour: number;
}

export interface GreylistLists {
  readonly clients: ClientWhitelist;
  readonly recipients: RecipientWhitelist;
}

export interface GreylistRequest {
  readonly clientAddress: string;
  /** Postfix's client_name: the verified reverse name, or "unknown". */
  readonly clientName: string;
  readonly sender: string;
  readonly recipient: string;
}

export type GreylistOutcome = (
  | { readonly action: 'pass'; readonly reason: 'client whitelist' | 'recipient whitelist' | 'client AWL' | 'triplet found' }
  /** First pass after a delay: the X-Greylist field says how long. */
  | { readonly action: 'pass'; readonly reason: 'delayed'; readonly delayedSec: number }
  | { readonly action: 'greylist'; readonly reason: 'new' | 'early retry' | 'client cap'; readonly retryInSec: number }
) & {
  /** The store's error when a write that keeps the state failed; the decision stands (see Failures above). */
  readonly unsaved?: unknown;
};

const HOUR = 3600;
const LONGEST_KEY = 900;

function storeKey(kind: 't' | 'c' | 'n', id: string): string {
  return `greylist:${kind}:${id.length > LONGEST_KEY ? `sha256:${createHash('sha256').update(id).digest('hex')}` : id}`;
}

function pair(value: string | undefined): [number, number] | undefined {
  if (value === undefined) return undefined;
  const [a, b] = value.split(',').map(Number);
  return Number.isFinite(a) && Number.isFinite(b) ? [a, b] : undefined;
}

/** The decision for one recipient; `nowSec` is the clock in seconds. Writes the triplet's new state. */
export async function greylist(store: GreylistStore, settings: GreylistSettings, lists: GreylistLists, req: GreylistRequest, nowSec: number): Promise<GreylistOutcome> {
  if (lists.clients.matches(req.clientName, req.clientAddress)) return { action: 'pass', reason: 'client whitelist' };
  if (lists.recipients.matches(req.recipient)) return { action: 'pass', reason: 'recipient whitelist' };
  const maxAgeMs = settings.maxAgeDays * 86400 * 1000;
  const awl = settings.autoWhitelistClients > 0;
  const clientKey = storeKey('c', req.clientAddress.toLowerCase());
  // Writes after the decision to pass: a failure is reported with the pass, not thrown over it.
  let unsaved: unknown;
  const keep = (write: Promise<unknown>) =>
    write.then(
      () => undefined,
      (err: unknown) => void (unsaved ??= err),
    );
  const client = awl ? pair(await store.get(clientKey)) : undefined;
  if (client && client[0] >= settings.autoWhitelistClients) {
    if (nowSec >= client[1] + HOUR || client[1] > nowSec) await keep(store.set(clientKey, `${client[0] + 1},${nowSec}`, { ttlMs: maxAgeMs }));
    return { action: 'pass', reason: 'client AWL', unsaved };
  }

  const network = clientNetwork(req.clientAddress, settings.ipv4PrefixBits, settings.ipv6PrefixBits);
  const key = storeKey('t', tripletKey(network, req.sender, req.recipient));
  let seen = pair(await store.get(key));
  // Every new triplet is a row kept for the retry window: a client making up senders or
  // recipients would grow the store without bound. Past the cap its new triplets are
  // greylisted without being stored (so they cannot pass until the next hour stores them).
  // Counted per IPv4 address, not per /24: a budget shared with the neighbours is one a
  // neighbour making up triplets at the top of each hour uses up, and then the network's
  // legitimate server is never stored and its mail deferred until it bounces. An IPv6 host has
  // a whole network of addresses, so there the count is per ipv6PrefixBits network.
  const cap = settings.maxNewTripletsPerClientHour;
  if (!seen && cap > 0) {
    const counted = clientNetwork(req.clientAddress, 32, settings.ipv6PrefixBits);
    const made = await store.increment(storeKey('n', `${counted}:${Math.floor(nowSec / HOUR)}`), 1, { ttlMs: 2 * HOUR * 1000 });
    if (made > cap) return { action: 'greylist', reason: 'client cap', retryInSec: settings.delaySec };
  }
  if (!seen && !(await store.setIfAbsent(key, `${nowSec},${nowSec}`, { ttlMs: settings.retryWindowSec * 1000 }))) {
    // Another worker or host wrote it first: decide on its first-seen time.
    seen = pair(await store.get(key));
    // A value that is no "first,last" (a damaged row) would otherwise stay, and every attempt
    // be greylisted as new until it expired: it is replaced by this first sighting.
    if (!seen) await store.set(key, `${nowSec},${nowSec}`, { ttlMs: settings.retryWindowSec * 1000 });
  }
  let first = seen ? seen[0] : nowSec;
  const lastWasSuccessful = seen !== undefined && seen[1] - seen[0] >= settings.delaySec;
  if (seen && !lastWasSuccessful && nowSec - first > settings.retryWindowSec) first = nowSec;
  if (first > nowSec) first = nowSec;
  const waited = nowSec - first;
  const passed = waited >= settings.delaySec;
  // A triplet that passed lives maxAge after its last use; one still waiting, the retry window.
  // Not written, a passing triplet passes again at its next use (its first sighting stays).
  if (seen) await keep(store.set(key, `${first},${nowSec}`, { ttlMs: passed ? maxAgeMs : settings.retryWindowSec * 1000 }));

  if (!passed) return { action: 'greylist', reason: seen && first !== nowSec ? 'early retry' : 'new', retryInSec: settings.delaySec - waited, unsaved };
  if (lastWasSuccessful) return { action: 'pass', reason: 'triplet found', unsaved };
  if (awl && (!client || nowSec >= client[1] + HOUR)) await keep(store.set(clientKey, `${(client?.[0] ?? 0) + 1},${nowSec}`, { ttlMs: maxAgeMs }));
  return { action: 'pass', reason: 'delayed', delayedSec: waited, unsaved };
}
