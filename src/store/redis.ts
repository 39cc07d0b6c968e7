/**
 * The Store (store/store.ts) on Redis through ioredis, for several hosts sharing one state.
 * TTLs are Redis's own (SET PX, PEXPIRE); the compound operations are MULTI/EXEC
 * transactions, which Redis runs without interleaving another client's commands:
 * increment = INCRBY + PEXPIRE NX, append = RPUSH + LTRIM + PEXPIRE, takeAll = LRANGE + DEL.
 * scan walks SCAN MATCH <prefix>* (Redis skips expired keys). Needs Redis 7.0 or newer
 * (PEXPIRE NX); Debian 12 ships 7.0.
 *
 * Connection failures never crash the process: the client's 'error' events are logged (once
 * per outage, and "reconnected" when it is back), the client reconnects for ever with a
 * growing delay (at most RECONNECT_MAX_DELAY_MS), and operations meanwhile reject with
 * STORE_UNAVAILABLE: at once while the outage is known (an 'error' since the last 'ready'),
 * so that mail waiting on a store write is not held up; otherwise a command waits for at most
 * one reconnection attempt and at most timeoutMs. A command in flight when the connection
 * drops is not sent again (an increment must not count twice); it rejects.
 *
 * Fails with CFG_STORE_UNUSABLE at open for a URL that is not redis:// or rediss://.
 */
import Redis from 'ioredis';
import { PostsealError } from '../errors';
import type { Logger } from '../lib/log';
import { checkCount, checkIncrement, checkKey, checkValue, scanLimit, ttlOf, unavailable, type AppendOptions, type Store, type TtlOptions } from './store';

export interface RedisStoreOptions {
  /** redis://[user:password@]host:port/db or rediss:// (TLS). */
  readonly url: string;
  readonly keyPrefix: string;
  /** Longest wait for a connection or a reply. */
  readonly timeoutMs: number;
  readonly log?: Logger;
  /** Names the setting in CFG_STORE_UNUSABLE messages. */
  readonly where?: string;
}

const RECONNECT_MAX_DELAY_MS = 2000;
/** Keys SCAN looks at per round trip. */
const SCAN_BATCH = 500;

/** The URL for log lines and errors, without its password. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    // ioredis takes its options from the query too: redis://host:6379/0?password=...
    for (const key of [...u.searchParams.keys()]) if (/pass|secret|token/i.test(key)) u.searchParams.set(key, '***');
    return u.toString();
  } catch {
    return '(invalid URL)';
  }
}

/** Redis MATCH pattern with the prefix taken literally. */
function matchPrefix(prefix: string): string {
  return `${prefix.replace(/[*?[\]\\]/g, (c) => `\\${c}`)}*`;
}

type ExecResult = [error: Error | null, result: unknown][] | null;

/** The results of a MULTI/EXEC, or the first command's error. */
function results(r: ExecResult): unknown[] {
  if (!r) throw new Error('transaction aborted');
  for (const [err] of r) if (err) throw err;
  return r.map(([, v]) => v);
}

/**
 * One PING over a connection of its own, closed after: null when Redis answered, else why not
 * (refused, timed out, NOAUTH for a missing or wrong password, a database number Redis does not
 * have). For `config check`'s warning and /readyz: postseal starts without Redis, so a wrong URL
 * would otherwise show only as failed operations later.
 */
export async function pingRedis(url: string, timeoutMs: number): Promise<string | null> {
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
    // A server that does not read would keep the half-closed probe for ioredis's 2 s default.
    disconnectTimeout: 0,
  });
  // The connection's own error (ECONNREFUSED, NOAUTH) says more than the "Connection is closed" that follows it.
  let first: Error | undefined;
  client.on('error', (err: Error) => (first ??= err));
  // One deadline for the whole: a Redis that takes the connection and never answers would
  // otherwise cost a timeout for each of ioredis's HELLO, ready check and the PING.
  const deadline = setTimeout(() => {
    first ??= new Error(`no answer within ${timeoutMs} ms`);
    client.disconnect();
  }, timeoutMs);
  try {
    await client.connect();
    await client.ping();
    // A SELECT of a database Redis does not have fails beside a PING that passes (on database 0).
    return first ? first.message.split(/[,.]\s/)[0] : null;
  } catch (err) {
    return (first ?? (err as Error)).message.split(/[,.]\s/)[0];
  } finally {
    clearTimeout(deadline);
    // A connection that failed has ended already; disconnect() would leave ioredis's 2 s
    // disconnectTimeout timer on its closed stream, holding `config check` open.
    if (client.status !== 'end') client.disconnect();
  }
}

/** Makes the client and starts connecting; resolves once it is ready or after timeoutMs (then operations reject until it is). */
export async function openRedisStore(opts: RedisStoreOptions): Promise<Store> {
  let url: URL;
  try {
    url = new URL(opts.url);
  } catch (err) {
    throw new PostsealError('CFG_STORE_UNUSABLE', `${opts.where ?? 'store.redis.url'}: ${redactUrl(opts.url)} is not a URL; write redis://host:6379/0`, { cause: err });
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new PostsealError('CFG_STORE_UNUSABLE', `${opts.where ?? 'store.redis.url'}: ${redactUrl(opts.url)}: the scheme must be redis:// or rediss://`);
  }
  const store = new RedisStore(opts);
  await store.ready();
  return store;
}

class RedisStore implements Store {
  readonly description: string;
  private readonly client: Redis;
  private closed = false;
  /** The connection error since the last 'ready', if any: operations fail at once with it. */
  private down: Error | undefined;
  /** Whether the eviction policy was looked at (once, at the first connection). */
  private evictionChecked = false;

  constructor(private readonly opts: RedisStoreOptions) {
    this.description = `redis ${redactUrl(opts.url)}`;
    this.client = new Redis(opts.url, {
      connectTimeout: opts.timeoutMs,
      commandTimeout: opts.timeoutMs,
      maxRetriesPerRequest: 1,
      autoResendUnfulfilledCommands: false,
      retryStrategy: (times) => Math.min(times * 100, RECONNECT_MAX_DELAY_MS),
    });
    // Without a listener, an 'error' event would be thrown and end the process.
    this.client.on('error', (err: Error) => {
      const known = this.down !== undefined;
      this.down = err;
      if (known || this.closed) return;
      opts.log?.error({ err, store: this.description }, 'store unreachable; operations fail until it is back');
    });
    this.client.on('ready', () => {
      if (this.down) opts.log?.info({ store: this.description }, 'store reconnected');
      this.down = undefined;
      if (!this.evictionChecked) void this.checkEviction();
    });
  }

  /**
   * A Redis that evicts keys at its maxmemory drops DMARC records, report locks, greylisting
   * triplets and the quarantine index without a word, and postseal cannot tell an evicted key
   * from one that never was: say so once, at the first connection. INFO, not CONFIG GET, as
   * hosted Redis often renames CONFIG; when INFO is refused too there is nothing to say.
   */
  private async checkEviction(): Promise<void> {
    this.evictionChecked = true;
    try {
      const info = await this.client.info('memory');
      const maxmemory = Number(/^maxmemory:(\d+)/m.exec(info)?.[1] ?? 0);
      const policy = /^maxmemory_policy:(\S+)/m.exec(info)?.[1];
      if (maxmemory > 0 && policy && policy !== 'noeviction') {
        this.opts.log?.warn(
          { store: this.description, maxmemory, policy },
          `Redis evicts keys at maxmemory (maxmemory-policy ${policy}): postseal's records, locks and greylisting triplets can vanish when it is full; set maxmemory-policy noeviction (writes then fail and are logged) or give Redis room`,
        );
      }
    } catch {
      // INFO refused or the connection gone again: not a reason to say anything.
    }
  }

  /** Waits for the first connection; logs and returns (rather than failing start-up) when it does not come. */
  async ready(): Promise<void> {
    if (this.client.status === 'ready') return;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.client.off('ready', done);
        resolve();
      };
      const timer = setTimeout(done, this.opts.timeoutMs);
      this.client.on('ready', done);
    });
    if ((this.client.status as string) !== 'ready')
      this.opts.log?.warn({ store: this.description }, 'store not reachable at start-up; postseal runs on and operations that need it fail until it is');
  }

  private k(key: string): string {
    checkKey(key);
    return this.opts.keyPrefix + key;
  }

  private async run<T>(op: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw unavailable(`${this.description}: ${op}`, 'store closed');
    if (this.down) throw unavailable(`${this.description}: ${op}`, `not connected, reconnecting (${this.down.message})`);
    try {
      return await fn();
    } catch (err) {
      throw unavailable(`${this.description}: ${op}`, err);
    }
  }

  async get(key: string): Promise<string | undefined> {
    const k = this.k(key);
    return this.run('get', async () => (await this.client.get(k)) ?? undefined);
  }

  async set(key: string, value: string, opts?: TtlOptions): Promise<void> {
    const k = this.k(key);
    checkValue(value);
    const ttl = ttlOf(opts);
    await this.run('set', () => (ttl === undefined ? this.client.set(k, value) : this.client.set(k, value, 'PX', ttl)));
  }

  async setIfAbsent(key: string, value: string, opts?: TtlOptions): Promise<boolean> {
    const k = this.k(key);
    checkValue(value);
    const ttl = ttlOf(opts);
    const r = await this.run('setIfAbsent', () => (ttl === undefined ? this.client.set(k, value, 'NX') : this.client.set(k, value, 'PX', ttl, 'NX')));
    return r === 'OK';
  }

  async deleteIfValue(key: string, value: string): Promise<boolean> {
    const k = this.k(key);
    // GET and DEL in one script: nothing can take the key between the compare and the delete.
    const script = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";
    return Number(await this.run('deleteIfValue', () => this.client.eval(script, 1, k, value))) === 1;
  }

  async delete(key: string): Promise<boolean> {
    const k = this.k(key);
    return (await this.run('delete', () => this.client.del(k))) > 0;
  }

  async increment(key: string, by = 1, opts?: TtlOptions): Promise<number> {
    const k = this.k(key);
    checkIncrement(by);
    const ttl = ttlOf(opts);
    return this.run('increment', async () => {
      const m = this.client.multi().incrby(k, by);
      if (ttl !== undefined) m.pexpire(k, ttl, 'NX');
      return Number(results((await m.exec()) as ExecResult)[0]);
    });
  }

  async append(listKey: string, value: string, opts?: AppendOptions): Promise<number> {
    const k = this.k(listKey);
    checkValue(value);
    const ttl = ttlOf(opts);
    const max = opts?.maxLength;
    checkCount('maxLength', max);
    return this.run('append', async () => {
      const m = this.client.multi().rpush(k, value);
      if (max !== undefined) m.ltrim(k, -max, -1);
      if (ttl !== undefined) m.pexpire(k, ttl);
      const length = Number(results((await m.exec()) as ExecResult)[0]);
      return max === undefined ? length : Math.min(length, max);
    });
  }

  async range(listKey: string, limit?: number): Promise<string[]> {
    const k = this.k(listKey);
    checkCount('range limit', limit);
    return this.run('range', () => this.client.lrange(k, 0, limit === undefined ? -1 : limit - 1));
  }

  async takeAll(listKey: string): Promise<string[]> {
    const k = this.k(listKey);
    return this.run('takeAll', async () => results((await this.client.multi().lrange(k, 0, -1).del(k).exec()) as ExecResult)[0] as string[]);
  }

  async scan(prefix: string, limit?: number): Promise<string[]> {
    const max = scanLimit(limit);
    const pattern = matchPrefix(this.opts.keyPrefix + prefix);
    const cut = this.opts.keyPrefix.length;
    return this.run('scan', async () => {
      // SCAN may return a key twice; the Set keeps one.
      const keys = new Set<string>();
      let cursor = '0';
      do {
        const [next, batch] = await this.client.scan(cursor, 'MATCH', pattern, 'COUNT', SCAN_BATCH);
        for (const key of batch) if (keys.size < max) keys.add(key.slice(cut));
        cursor = next;
      } while (cursor !== '0' && keys.size < max);
      return [...keys];
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.client.status === 'ready') {
      // QUIT lets Redis finish the replies in flight; a dead connection is just dropped.
      await this.client.quit().catch(() => this.client.disconnect());
    } else {
      this.client.disconnect();
    }
  }
}
