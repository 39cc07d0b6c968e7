/**
 * The one interface to postseal's shared state (docs/architecture.md, "Lifecycle"): greylisting triplets, rate
 * counters, DMARC result history. Two back-ends implement it with the same behaviour
 * (test/store/contract.ts runs the same cases against both):
 *
 * - store/sqlite.ts: one file per host, shared by all its cluster workers;
 * - store/redis.ts: one Redis database shared by several hosts.
 *
 * Values are strings (callers JSON-encode). A key names either a value (get/set/increment) or
 * a list (append/range/takeAll), never both: Redis keeps them in one key space and rejects a
 * list command on a value. Every key is stored behind the store's key prefix (store.keyPrefix),
 * so two prefixes never see each other's keys.
 *
 * Expiry: a key with a TTL is gone for every reader once its time has passed (sqlite checks
 * the time on each read and deletes expired rows in a periodic sweep; Redis expires natively).
 *
 * Failures: every method rejects with PostsealError STORE_UNAVAILABLE when the back-end cannot
 * carry out the operation (Redis down or slow, sqlite busy past its timeout, store closed);
 * a call that breaks this contract (empty key, TTL that is not a positive integer, oversized
 * value) rejects with a RangeError, which is a bug in the caller.
 */
import { PostsealError } from '../errors';

export interface TtlOptions {
  /** Time to live in milliseconds, a positive integer; without it the key does not expire. */
  readonly ttlMs?: number;
}

export interface AppendOptions extends TtlOptions {
  /** Keep at most this many items: the oldest go first. */
  readonly maxLength?: number;
}

export interface Store {
  /** The back-end, for log lines: "sqlite /var/lib/postseal/postseal.db" or "redis redis://host:6379/0". */
  readonly description: string;

  /** The value, or undefined if the key is absent or expired. */
  get(key: string): Promise<string | undefined>;

  /** Writes the value; the key's TTL becomes `ttlMs` (no TTL without it), as Redis SET PX does. */
  set(key: string, value: string, opts?: TtlOptions): Promise<void>;

  /**
   * Writes the value only if the key is absent (or expired); true if this call wrote it.
   * Atomic: of several callers racing on one key, in any process or host, exactly one gets true.
   */
  setIfAbsent(key: string, value: string, opts?: TtlOptions): Promise<boolean>;

  /** Removes a value or a list; true if the key existed (and had not expired). */
  delete(key: string): Promise<boolean>;

  /**
   * Removes the value only if it still equals `value` (a lock released by its owner only,
   * not one another process took after it expired); true if removed. Atomic.
   */
  deleteIfValue(key: string, value: string): Promise<boolean>;

  /**
   * Adds `by` (an integer, may be negative) to the integer at the key (absent counts as 0)
   * and returns the new value. Atomic: concurrent increments from any process never lose one.
   * `ttlMs` is given to a counter that has no expiry yet (the first increment of a window),
   * together with the increment; later increments keep it, so a counter is a fixed window.
   * Rejects with STORE_UNAVAILABLE if the key holds a value that is not an integer.
   */
  increment(key: string, by?: number, opts?: TtlOptions): Promise<number>;

  /**
   * Adds the value at the end of the list (creating it) and returns the list's length.
   * Atomic with its options: `maxLength` then drops the oldest items beyond it, and `ttlMs`
   * sets the list's expiry to now + ttlMs (each append renews it; without it the expiry stays).
   */
  append(listKey: string, value: string, opts?: AppendOptions): Promise<number>;

  /** The first `limit` items of the list (all without it), oldest first; [] if absent. */
  range(listKey: string, limit?: number): Promise<string[]>;

  /**
   * Reads the whole list and removes it, atomically: an append that races with it lands
   * either in what this call returns or in a new list, never lost (the report sender's read).
   */
  takeAll(listKey: string): Promise<string[]>;

  /**
   * Keys (values and lists, without the store's key prefix) that start with `prefix` and have
   * not expired, at most `limit` of them (in no promised order). Not a snapshot: keys written
   * during the scan may or may not appear.
   */
  scan(prefix: string, limit?: number): Promise<string[]>;

  /** Stops timers and closes the file or connection; later calls reject with STORE_UNAVAILABLE. */
  close(): Promise<void>;
}

/** Longest key, in characters (before the prefix): keys are built from names, not message data. */
export const MAX_KEY_CHARS = 1024;
/** Longest value, in characters: records are small JSON objects. */
export const MAX_VALUE_CHARS = 1024 * 1024;
/** What scan returns without a limit, and the most it returns with one. */
export const SCAN_DEFAULT_LIMIT = 1000;
export const SCAN_MAX_LIMIT = 100000;

export function checkKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_CHARS) throw new RangeError(`store key must be 1..${MAX_KEY_CHARS} characters`);
}

export function checkValue(value: string): void {
  if (typeof value !== 'string' || value.length > MAX_VALUE_CHARS) throw new RangeError(`store value must be a string of at most ${MAX_VALUE_CHARS} characters`);
}

/** The TTL in ms, or undefined; RangeError unless a positive safe integer. */
export function ttlOf(opts: TtlOptions | undefined): number | undefined {
  const t = opts?.ttlMs;
  if (t === undefined) return undefined;
  if (!Number.isSafeInteger(t) || t <= 0) throw new RangeError(`ttlMs must be a positive integer, not ${t}`);
  return t;
}

export function checkCount(name: string, n: number | undefined, max = Number.MAX_SAFE_INTEGER): void {
  if (n !== undefined && (!Number.isSafeInteger(n) || n < 1 || n > max)) throw new RangeError(`${name} must be an integer from 1 to ${max}, not ${n}`);
}

export function checkIncrement(by: number): void {
  if (!Number.isSafeInteger(by)) throw new RangeError(`increment must be an integer, not ${by}`);
}

export function scanLimit(limit: number | undefined): number {
  checkCount('scan limit', limit, SCAN_MAX_LIMIT);
  return limit ?? SCAN_DEFAULT_LIMIT;
}

/** The rejection of every back-end failure; `what` names the store and the operation. */
export function unavailable(what: string, err: unknown): PostsealError {
  const reason = err instanceof Error ? err.message : String(err);
  return new PostsealError('STORE_UNAVAILABLE', `${what}: ${reason}`, { cause: err });
}
