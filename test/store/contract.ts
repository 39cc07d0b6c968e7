/**
 * The behaviour every Store back-end promises (src/store/store.ts), run by
 * test/store/sqlite.test.ts and test/store/redis.test.ts against a real sqlite file and a
 * real redis-server. TTLs are real and short (TTL_MS), so expiry is waited for, not mocked.
 */
import { isPostsealError } from '../../src/errors';
import type { Store } from '../../src/store/store';

/** Opens a new handle on the same back-end (a second worker, or a second host for Redis). */
export type OpenStore = (keyPrefix: string) => Promise<Store>;

/** Long enough that a loaded machine's late timers and slow first queries stay well inside it. */
export const TTL_MS = 300;
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

let prefixCount = 0;

export function storeContract(open: OpenStore): void {
  let prefix: string;
  let a: Store;
  let b: Store;
  const extra: Store[] = [];

  beforeEach(async () => {
    prefix = `t${process.pid}-${++prefixCount}-${Date.now()}:`;
    a = await open(prefix);
    b = await open(prefix);
  });

  afterEach(async () => {
    await Promise.all([a, b, ...extra.splice(0)].map((s) => s.close()));
  });

  describe('values', () => {
    test('an absent key reads as undefined, and a set value is read back by another handle', async () => {
      expect(await a.get('k')).toBeUndefined();
      await a.set('k', 'v1');
      expect(await b.get('k')).toBe('v1');
      await b.set('k', 'v2');
      expect(await a.get('k')).toBe('v2');
    });

    test('a value with a TTL is gone after it, for every handle', async () => {
      await a.set('k', 'v', { ttlMs: TTL_MS });
      expect(await b.get('k')).toBe('v');
      await sleep(TTL_MS * 2);
      expect(await a.get('k')).toBeUndefined();
      expect(await b.get('k')).toBeUndefined();
    });

    test('set without a TTL removes an earlier TTL', async () => {
      await a.set('k', 'v', { ttlMs: TTL_MS });
      await a.set('k', 'kept');
      await sleep(TTL_MS * 2);
      expect(await b.get('k')).toBe('kept');
    });

    test('of many racing setIfAbsent calls on two handles exactly one wins, and its value stays', async () => {
      const wins = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).setIfAbsent('lock', `owner${i}`)));
      expect(wins.filter(Boolean)).toHaveLength(1);
      expect(await a.get('lock')).toBe(`owner${wins.indexOf(true)}`);
      expect(await b.setIfAbsent('lock', 'late')).toBe(false);
    });

    test('setIfAbsent succeeds again once the earlier value expired', async () => {
      expect(await a.setIfAbsent('lock', 'first', { ttlMs: TTL_MS })).toBe(true);
      expect(await b.setIfAbsent('lock', 'second', { ttlMs: TTL_MS })).toBe(false);
      await sleep(TTL_MS * 2);
      expect(await b.setIfAbsent('lock', 'third')).toBe(true);
      expect(await a.get('lock')).toBe('third');
    });

    test('deleteIfValue removes a lock only for its owner, and not one re-taken after it expired', async () => {
      expect(await a.setIfAbsent('lock', 'first', { ttlMs: TTL_MS })).toBe(true);
      expect(await b.deleteIfValue('lock', 'other')).toBe(false);
      expect(await a.get('lock')).toBe('first');
      await sleep(TTL_MS * 2);
      expect(await b.setIfAbsent('lock', 'second')).toBe(true);
      expect(await a.deleteIfValue('lock', 'first')).toBe(false);
      expect(await a.get('lock')).toBe('second');
      expect(await b.deleteIfValue('lock', 'second')).toBe(true);
      expect(await a.get('lock')).toBeUndefined();
    });

    test('delete says whether the key existed, and removes values and lists', async () => {
      await a.set('k', 'v');
      await a.append('l', 'x');
      expect(await b.delete('k')).toBe(true);
      expect(await b.delete('l')).toBe(true);
      expect(await b.delete('k')).toBe(false);
      expect(await a.get('k')).toBeUndefined();
      expect(await a.range('l')).toEqual([]);
    });

    test('an expired key does not count as deleted', async () => {
      await a.set('k', 'v', { ttlMs: TTL_MS });
      await sleep(TTL_MS * 2);
      expect(await a.delete('k')).toBe(false);
    });
  });

  describe('counters', () => {
    test('increment starts from 0, adds by (negative too) and is read back as a string', async () => {
      expect(await a.increment('c')).toBe(1);
      expect(await a.increment('c', 10)).toBe(11);
      expect(await b.increment('c', -3)).toBe(8);
      expect(await b.get('c')).toBe('8');
    });

    test('many concurrent increments on two handles give the exact sum', async () => {
      const n = 400;
      const results = await Promise.all(Array.from({ length: n }, (_, i) => (i % 2 ? a : b).increment('c', 2)));
      expect(await a.get('c')).toBe(String(2 * n));
      // Every increment saw a different total: none was lost or applied twice.
      expect(new Set(results).size).toBe(n);
    });

    test('a counter TTL is set by the first increment and not renewed by later ones', async () => {
      await a.increment('c', 1, { ttlMs: TTL_MS * 3 });
      await sleep(TTL_MS * 2);
      expect(await b.increment('c', 1, { ttlMs: TTL_MS * 3 })).toBe(2);
      await sleep(TTL_MS * 2);
      // A renewed TTL would keep the counter until 5 x TTL_MS; the first one ended at 3 x.
      expect(await a.get('c')).toBeUndefined();
      expect(await a.increment('c', 1, { ttlMs: TTL_MS * 3 })).toBe(1);
    });

    test('incrementing a value that is not an integer rejects with STORE_UNAVAILABLE', async () => {
      await a.set('c', 'not a number');
      expect(isPostsealError(await rejection(a.increment('c')), 'STORE_UNAVAILABLE')).toBe(true);
      expect(await a.get('c')).toBe('not a number');
    });
  });

  describe('lists', () => {
    test('append returns the length and range reads the items oldest first, from another handle', async () => {
      expect(await a.append('l', 'one')).toBe(1);
      expect(await b.append('l', 'two')).toBe(2);
      expect(await a.append('l', 'three')).toBe(3);
      expect(await b.range('l')).toEqual(['one', 'two', 'three']);
      expect(await b.range('l', 2)).toEqual(['one', 'two']);
      expect(await a.range('absent')).toEqual([]);
    });

    test('maxLength keeps the newest items', async () => {
      for (let i = 1; i <= 5; i++) expect(await a.append('l', `v${i}`, { maxLength: 3 })).toBe(Math.min(i, 3));
      expect(await b.range('l')).toEqual(['v3', 'v4', 'v5']);
      expect(await a.append('l', 'v6', { maxLength: 3 })).toBe(3);
      expect(await b.range('l')).toEqual(['v4', 'v5', 'v6']);
    });

    test('takeAll returns every item and removes the list; the next append starts a new one', async () => {
      for (const v of ['x', 'y', 'z']) await a.append('l', v);
      expect(await b.takeAll('l')).toEqual(['x', 'y', 'z']);
      expect(await a.takeAll('l')).toEqual([]);
      expect(await a.range('l')).toEqual([]);
      expect(await a.append('l', 'again')).toBe(1);
      expect(await b.range('l')).toEqual(['again']);
    });

    test('appends racing with takeAll are each taken exactly once', async () => {
      const n = 200;
      const taken: string[] = [];
      const appends = Array.from({ length: n }, (_, i) => (i % 2 ? a : b).append('l', `item${i}`));
      const takes = Array.from({ length: 10 }, () => a.takeAll('l').then((items) => taken.push(...items)));
      await Promise.all([...appends, ...takes]);
      taken.push(...(await b.takeAll('l')));
      expect(taken.sort()).toEqual(Array.from({ length: n }, (_, i) => `item${i}`).sort());
    });

    test('a list with a TTL is gone after it; each append renews the TTL', async () => {
      // Margins of 300 ms or more on every side, so that a loaded machine's late timers cannot
      // make the renewal look missing (this read at 2.2 s is after the first TTL alone ends).
      await a.append('l', 'old', { ttlMs: 2000 });
      await sleep(500);
      await b.append('l', 'new', { ttlMs: 2000 });
      await sleep(1700);
      expect(await a.range('l')).toEqual(['old', 'new']);
      await sleep(800);
      expect(await a.range('l')).toEqual([]);
      expect(await b.takeAll('l')).toEqual([]);
      expect(await a.append('l', 'fresh')).toBe(1);
    });
  });

  describe('scan', () => {
    test('finds the values and lists that start with the prefix, without the store prefix', async () => {
      await a.set('grey:1', 'v');
      await a.increment('grey:2');
      await a.append('grey:3', 'x');
      await a.set('rate:1', 'v');
      expect((await b.scan('grey:')).sort()).toEqual(['grey:1', 'grey:2', 'grey:3']);
      expect((await b.scan('')).sort()).toEqual(['grey:1', 'grey:2', 'grey:3', 'rate:1']);
    });

    test('two key prefixes do not see each other', async () => {
      const other = await open(`other-${prefix}`);
      extra.push(other);
      await a.set('k', 'mine');
      await other.set('k', 'theirs');
      await other.append('l', 'theirs');
      expect(await a.get('k')).toBe('mine');
      expect(await other.get('k')).toBe('theirs');
      expect(await a.range('l')).toEqual([]);
      expect(await a.scan('')).toEqual(['k']);
      expect((await other.scan('')).sort()).toEqual(['k', 'l']);
      await a.delete('k');
      expect(await other.get('k')).toBe('theirs');
    });

    test('skips expired keys and takes wildcard characters in the prefix literally', async () => {
      await a.set('x*1', 'v');
      await a.set('x?2', 'v');
      await a.set('x[3]', 'v');
      await a.set('xy', 'v');
      await a.set('x*gone', 'v', { ttlMs: TTL_MS });
      await sleep(TTL_MS * 2);
      expect(await b.scan('x*')).toEqual(['x*1']);
      expect(await b.scan('x?')).toEqual(['x?2']);
      expect(await b.scan('x[')).toEqual(['x[3]']);
      expect((await b.scan('x')).sort()).toEqual(['x*1', 'x?2', 'x[3]', 'xy']);
    });

    test('returns at most limit keys', async () => {
      for (let i = 0; i < 30; i++) await a.set(`many:${i}`, 'v');
      expect(await b.scan('many:', 7)).toHaveLength(7);
      expect(await b.scan('many:')).toHaveLength(30);
    });
  });

  describe('contract violations and close', () => {
    test('an empty key, a TTL that is not a positive integer or a fractional increment is a RangeError', async () => {
      await expect(a.get('')).rejects.toThrow(RangeError);
      await expect(a.set('k', 'v', { ttlMs: 0 })).rejects.toThrow(RangeError);
      await expect(a.set('k', 'v', { ttlMs: 1.5 })).rejects.toThrow(RangeError);
      await expect(a.increment('k', 0.5)).rejects.toThrow(RangeError);
      await expect(a.append('l', 'v', { maxLength: 0 })).rejects.toThrow(RangeError);
    });

    test('after close every operation rejects with STORE_UNAVAILABLE, and close can be called again', async () => {
      await a.close();
      for (const op of [a.get('k'), a.set('k', 'v'), a.increment('k'), a.append('l', 'v'), a.takeAll('l'), a.scan('')]) {
        expect(isPostsealError(await rejection(op), 'STORE_UNAVAILABLE')).toBe(true);
      }
      await a.close();
      expect(await b.increment('k')).toBe(1);
    });
  });
}
