/**
 * The sqlite back-end: the shared contract (test/store/contract.ts) on a real file, plus what
 * only a file has: its mode, WAL, the open errors, the expiry sweep, and several processes
 * (as the cluster workers of one host) writing the same file at once.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { isPostsealError } from '../../src/errors';
import { openSqliteStore } from '../../src/store/sqlite';
import { nodeBin, root } from '../helpers/cli';
import { sleep, storeContract, TTL_MS } from './contract';

const dir = mkdtempSync(path.join(tmpdir(), 'postseal-store-'));
const file = path.join(dir, 'state.db');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function errorOf(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected an error');
}

describe('sqlite store contract', () => {
  storeContract(async (keyPrefix) => openSqliteStore({ file, keyPrefix, busyTimeoutMs: 5000 }));
});

describe('sqlite store file', () => {
  test('the file and its WAL file are created with mode 0600 in WAL mode', async () => {
    const f = path.join(dir, 'mode.db');
    const store = openSqliteStore({ file: f, keyPrefix: 'p:', busyTimeoutMs: 1000 });
    await store.set('k', 'v');
    expect(statSync(f).mode & 0o777).toBe(0o600);
    expect(statSync(`${f}-wal`).mode & 0o777).toBe(0o600);
    const raw = new DatabaseSync(f, { readOnly: true });
    expect(raw.prepare('PRAGMA journal_mode').get()).toEqual({ journal_mode: 'wal' });
    raw.close();
    await store.close();
  });

  test('a missing folder is CFG_STORE_UNUSABLE naming the setting, the file and the fix', () => {
    const err = errorOf(() => openSqliteStore({ file: path.join(dir, 'missing', 'x.db'), keyPrefix: '', busyTimeoutMs: 0, where: '/etc/p.yaml: /store/sqlite/file' }));
    expect(isPostsealError(err, 'CFG_STORE_UNUSABLE')).toBe(true);
    expect((err as Error).message).toContain('/etc/p.yaml: /store/sqlite/file');
    expect((err as Error).message).toContain(path.join(dir, 'missing'));
    expect((err as Error).message).toContain('mkdir');
  });

  test('a file that is not a sqlite database is CFG_STORE_UNUSABLE, and is left as it was', () => {
    const f = path.join(dir, 'not-a-db');
    writeFileSync(f, 'this is a text file, not a database, and it is long enough to have a header\n'.repeat(10));
    expect(
      isPostsealError(
        errorOf(() => openSqliteStore({ file: f, keyPrefix: '', busyTimeoutMs: 0 })),
        'CFG_STORE_UNUSABLE',
      ),
    ).toBe(true);
    expect(statSync(f).size).toBe(760);
  });

  test('a file written by a newer schema is refused', () => {
    const f = path.join(dir, 'newer.db');
    const raw = new DatabaseSync(f);
    raw.exec('PRAGMA user_version = 99');
    raw.close();
    const err = errorOf(() => openSqliteStore({ file: f, keyPrefix: '', busyTimeoutMs: 0 }));
    expect(isPostsealError(err, 'CFG_STORE_UNUSABLE')).toBe(true);
    expect((err as Error).message).toContain('newer postseal');
  });

  test('the sweep deletes expired values and lists from the file; close stops it', async () => {
    const f = path.join(dir, 'sweep.db');
    const store = openSqliteStore({ file: f, keyPrefix: 'p:', busyTimeoutMs: 1000, sweepIntervalMs: TTL_MS });
    await store.set('gone', 'v', { ttlMs: TTL_MS });
    await store.append('gone-list', 'v', { ttlMs: TTL_MS });
    await store.set('kept', 'v');
    const raw = new DatabaseSync(f);
    const count = () => raw.prepare('SELECT (SELECT count(*) FROM kv) + (SELECT count(*) FROM lists) + (SELECT count(*) FROM list_items) AS n').get() as { n: number };
    expect(count().n).toBe(4);
    await sleep(TTL_MS * 4);
    expect(count().n).toBe(1);
    await store.close();
    raw.exec("INSERT INTO kv (key, value, expires_at) VALUES ('p:late', 'v', 1)");
    await sleep(TTL_MS * 3);
    expect(count().n).toBe(2);
    raw.close();
  });
});

describe('opening a file another process holds', () => {
  test('waits while another process holds the new file locked, then opens it', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'postseal-sqlite-lock-'));
    const file = path.join(dir, 'state.db');
    // Another process takes an exclusive lock on the new, not yet WAL file, and holds it for 600 ms.
    const holder = spawn(nodeBin, [
      '-e',
      `const { DatabaseSync } = require('node:sqlite'); const db = new DatabaseSync(${JSON.stringify(file)}); db.exec('PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; CREATE TABLE t (x)'); console.log('locked'); setTimeout(() => { db.exec('COMMIT'); db.close(); }, 600);`,
    ]);
    // Listened for at once: the holder may exit before the write is done.
    const holderExit = new Promise((r) => holder.once('exit', r));
    await new Promise<void>((resolve, reject) => {
      holder.stdout.once('data', () => resolve());
      holder.once('exit', (code) => reject(new Error(`the lock holder exited ${code} before locking`)));
    });
    const store = openSqliteStore({ file, keyPrefix: 'p:', busyTimeoutMs: 5000 });
    await store.set('k', 'v');
    expect(await store.get('k')).toBe('v');
    await store.close();
    await holderExit;
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('a lock another process holds during operation', () => {
  test('is waited for with the event loop free, then the write goes through', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'postseal-sqlite-busy-'));
    const file = path.join(dir, 'state.db');
    const store = openSqliteStore({ file, keyPrefix: 'p:', busyTimeoutMs: 5000 });
    await store.set('k', 'before');
    const holder = spawn(nodeBin, [
      '-e',
      `const { DatabaseSync } = require('node:sqlite'); const db = new DatabaseSync(${JSON.stringify(file)}); db.exec('BEGIN IMMEDIATE'); console.log('locked'); setTimeout(() => { db.exec('COMMIT'); db.close(); }, 800);`,
    ]);
    // Listened for at once: the holder may exit before the write is done.
    const holderExit = new Promise((r) => holder.once('exit', r));
    await new Promise<void>((resolve, reject) => {
      holder.stdout.once('data', () => resolve());
      holder.once('exit', (code) => reject(new Error(`the lock holder exited ${code} before locking`)));
    });
    let ticks = 0;
    const tick = setInterval(() => ticks++, 10);
    const write = store.set('k', 'after');
    await sleep(300);
    // sqlite's own busy wait would have blocked this thread for the whole lock: no tick at all.
    expect(ticks).toBeGreaterThan(5);
    await write;
    clearInterval(tick);
    expect(await store.get('k')).toBe('after');
    await store.close();
    await holderExit;
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('several processes on one file', () => {
  const dist = path.join(root, 'dist/store/sqlite.js');

  test('three worker processes writing at once lose no increment or append, and one wins setIfAbsent', async () => {
    expect(existsSync(dist)).toBe(true); // built by `npm run build` (npm test's pretest)
    const f = path.join(dir, 'workers.db');
    const n = 300;
    const startAt = Date.now() + 1500;
    const script = path.join(root, 'test/fixtures/scripts/store-worker.js');
    const runs = ['w1', 'w2', 'w3'].map(
      (id) =>
        new Promise<{ won: boolean; totals: number[] }>((resolve, reject) => {
          const child = spawn(nodeBin, [script, f, id, String(n), String(startAt)]);
          let out = '';
          let err = '';
          child.stdout.on('data', (d) => (out += d));
          child.stderr.on('data', (d) => (err += d));
          child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`${id} exited ${code}: ${err}`))));
        }),
    );
    const results = await Promise.all(runs);
    const store = openSqliteStore({ file: f, keyPrefix: 'w:', busyTimeoutMs: 1000 });
    expect(await store.get('counter')).toBe(String(3 * n));
    // Each total was seen by exactly one increment, in whichever process.
    expect(new Set(results.flatMap((r) => r.totals)).size).toBe(3 * n);
    expect(await store.range('log')).toHaveLength(3 * n);
    expect(results.filter((r) => r.won)).toHaveLength(1);
    await store.close();
  });
});
