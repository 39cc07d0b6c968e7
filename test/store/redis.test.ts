/**
 * The Redis back-end: the shared contract (test/store/contract.ts) against a real
 * redis-server on a free loopback port, plus what only a network store has: the server going
 * away mid-run (operations reject with STORE_UNAVAILABLE, nothing crashes), reconnecting when
 * it is back, starting while it is down, and a bad URL.
 */
import { Writable } from 'node:stream';
import Redis from 'ioredis';
import { isPostsealError } from '../../src/errors';
import { createLogger } from '../../src/lib/log';
import { openStore } from '../../src/store';
import { openRedisStore } from '../../src/store/redis';
import type { Store } from '../../src/store/store';
import { freePort, startRedisServer, type RedisServer } from '../helpers/redis-server';
import { sleep, storeContract } from './contract';

const TIMEOUT_MS = 500;
let server: RedisServer;

beforeAll(async () => {
  server = await startRedisServer();
});
afterAll(async () => {
  await server?.stop();
});

function capture(): { log: ReturnType<typeof createLogger>; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _e, cb) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line));
      cb();
    },
  });
  return { log: createLogger('info', sink), lines };
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

describe('redis store contract', () => {
  storeContract((keyPrefix) => openRedisStore({ url: server.url, keyPrefix, timeoutMs: 2000 }));
});

describe('redis store connection', () => {
  test('redis going away mid-run makes operations reject with STORE_UNAVAILABLE; they work again once it is back', async () => {
    const { log, lines } = capture();
    const store = await openRedisStore({ url: server.url, keyPrefix: 'outage:', timeoutMs: TIMEOUT_MS, log });
    try {
      expect(await store.increment('c')).toBe(1);
      await server.kill();
      const started = Date.now();
      for (const op of [store.get('c'), store.increment('c'), store.append('l', 'v'), store.takeAll('l'), store.scan('')]) {
        expect(isPostsealError(await rejection(op), 'STORE_UNAVAILABLE')).toBe(true);
      }
      // The first waited at most one reconnection attempt and TIMEOUT_MS; once the outage was
      // known the others failed at once.
      expect(Date.now() - started).toBeLessThan(TIMEOUT_MS + 2000);
      const known = Date.now();
      expect(isPostsealError(await rejection(store.set('k', 'v')), 'STORE_UNAVAILABLE')).toBe(true);
      expect(Date.now() - known).toBeLessThan(50);
      expect(lines.filter((l) => l.msg === 'store unreachable; operations fail until it is back')).toHaveLength(1);
      await server.restart();
      let value: number | undefined;
      for (let i = 0; i < 50 && value === undefined; i++) {
        value = await store.increment('c').catch(() => undefined);
        if (value === undefined) await sleep(100);
      }
      // The restarted server is empty (no persistence): the counter starts again.
      expect(value).toBe(1);
      expect(lines.some((l) => l.msg === 'store reconnected')).toBe(true);
    } finally {
      await store.close();
    }
  });

  test('started while redis is down, the store opens (and logs it); operations reject until redis answers', async () => {
    const { log, lines } = capture();
    const port = await freePort();
    const store = await openRedisStore({ url: `redis://127.0.0.1:${port}/0`, keyPrefix: 'down:', timeoutMs: TIMEOUT_MS, log });
    try {
      expect(lines.some((l) => l.level === 40 && String(l.msg).includes('not reachable at start-up'))).toBe(true);
      expect(isPostsealError(await rejection(store.set('k', 'v')), 'STORE_UNAVAILABLE')).toBe(true);
    } finally {
      await store.close();
    }
  });

  test('a Redis that evicts keys at maxmemory is named in a warning at the first connection; one that does not, or has no maxmemory, is not', async () => {
    const admin = new Redis(server.url);
    const warned = async () => {
      const { log, lines } = capture();
      const store = await openRedisStore({ url: server.url, keyPrefix: 'evict:', timeoutMs: TIMEOUT_MS, log });
      await store.set('k', 'v'); // after the INFO the check sent at 'ready'
      await store.close();
      return lines.filter((l) => l.level === 40 && String(l.msg).includes('maxmemory-policy'));
    };
    try {
      await admin.config('SET', 'maxmemory', '100mb');
      await admin.config('SET', 'maxmemory-policy', 'allkeys-lru');
      expect(await warned()).toEqual([expect.objectContaining({ policy: 'allkeys-lru', maxmemory: 104857600 })]);
      await admin.config('SET', 'maxmemory-policy', 'noeviction');
      expect(await warned()).toEqual([]);
      await admin.config('SET', 'maxmemory-policy', 'volatile-lru');
      await admin.config('SET', 'maxmemory', '0');
      expect(await warned()).toEqual([]);
    } finally {
      await admin.config('SET', 'maxmemory-policy', 'noeviction');
      admin.disconnect();
    }
  });

  test('a URL that is not redis:// is CFG_STORE_UNUSABLE, without its password in the message', async () => {
    const err = await rejection(openRedisStore({ url: 'http://user:secret@127.0.0.1:6379/', keyPrefix: '', timeoutMs: TIMEOUT_MS, where: 'p.yaml: /store/redis/url' }));
    expect(isPostsealError(err, 'CFG_STORE_UNUSABLE')).toBe(true);
    expect((err as Error).message).toContain('p.yaml: /store/redis/url');
    expect((err as Error).message).not.toContain('secret');
  });

  test('openStore with backend redis opens the configured URL behind the key prefix', async () => {
    const store = await openStore(
      { backend: 'redis', keyPrefix: 'cfg:', sqlite: { file: 'unused.db', busyTimeoutMs: 0 }, redis: { url: server.url, timeoutMs: TIMEOUT_MS } },
      '/etc/postseal/postseal.yaml',
      capture().log,
    );
    const admin = new Redis(server.url);
    try {
      await store.set('k', 'v');
      expect(await admin.get('cfg:k')).toBe('v');
      expect(store.description).toBe(`redis ${server.url}`);
    } finally {
      admin.disconnect();
      await store.close();
    }
  });

  test('close quits the connection: the server sees the client leave', async () => {
    const admin = new Redis(server.url);
    const clients = async () =>
      String(await admin.client('LIST'))
        .trim()
        .split('\n').length;
    try {
      const before = await clients();
      const store: Store = await openRedisStore({ url: server.url, keyPrefix: 'q:', timeoutMs: TIMEOUT_MS });
      await store.set('k', 'v');
      expect(await clients()).toBe(before + 1);
      await store.close();
      for (let i = 0; i < 20 && (await clients()) > before; i++) await sleep(50);
      expect(await clients()).toBe(before);
      expect(await admin.get('q:k')).toBe('v');
    } finally {
      admin.disconnect();
    }
  });
});
