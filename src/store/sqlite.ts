/**
 * The Store (store/store.ts) in one sqlite file through node:sqlite, for one host: every
 * cluster worker opens the same file. WAL mode lets readers go on while one writer writes;
 * busy_timeout makes a writer wait for another process's write lock instead of failing.
 * Operations that read and then write run in BEGIN IMMEDIATE transactions (the write lock is
 * taken first), so they are atomic across processes, not only within one.
 *
 * node:sqlite is synchronous: an operation blocks this process's event loop while it runs
 * (microseconds) or waits for another process's lock (at most busyTimeoutMs, then
 * STORE_UNAVAILABLE). Expired rows are invisible to every read (each query compares
 * expires_at with the time) and deleted by a sweep every sweepIntervalMs, at most
 * SWEEP_BATCH rows of each table per sweep, so that a sweep never holds the lock for long.
 * Measured on the shared 2-core machine: a DMARC record (one append) takes about 110 µs in one
 * process (9,000 a second); two processes appending to one file at once manage 5,500 a second
 * together (300-460 µs each), well above the 2,200 msg/s of the inbound path.
 *
 * node:sqlite is loaded only when this back-end opens. Node 24.21 prints no warning for it;
 * older 24.x releases print one "ExperimentalWarning: SQLite is an experimental feature" line
 * on standard error when it loads, which is harmless.
 *
 * Fails with CFG_STORE_UNUSABLE at open (folder missing, file unwritable or not a database,
 * written by a newer postseal) and STORE_UNAVAILABLE per operation.
 */
import { accessSync, closeSync, constants, existsSync, openSync, statSync } from 'node:fs';
import path from 'node:path';
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { PostsealError } from '../errors';
import type { Logger } from '../lib/log';
import { checkCount, checkIncrement, checkKey, checkValue, scanLimit, ttlOf, unavailable, type AppendOptions, type Store, type TtlOptions } from './store';

export interface SqliteStoreOptions {
  /** Absolute path of the database file; its folder must exist. */
  readonly file: string;
  readonly keyPrefix: string;
  readonly busyTimeoutMs: number;
  readonly sweepIntervalMs?: number;
  readonly log?: Logger;
  /** Names the setting in CFG_STORE_UNUSABLE messages: "/etc/postseal/postseal.yaml: /store/sqlite/file". */
  readonly where?: string;
}

/** The schema this code writes (PRAGMA user_version); a file with a higher one is refused. */
const SCHEMA_VERSION = 1;
const SWEEP_BATCH = 1000;
const DEFAULT_SWEEP_INTERVAL_MS = 60000;

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at INTEGER) STRICT, WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS kv_expiry ON kv (expires_at) WHERE expires_at IS NOT NULL;
  CREATE TABLE IF NOT EXISTS lists (key TEXT PRIMARY KEY, head INTEGER NOT NULL, next INTEGER NOT NULL, expires_at INTEGER) STRICT, WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS lists_expiry ON lists (expires_at) WHERE expires_at IS NOT NULL;
  CREATE TABLE IF NOT EXISTS list_items (key TEXT NOT NULL, seq INTEGER NOT NULL, value TEXT NOT NULL, PRIMARY KEY (key, seq)) STRICT, WITHOUT ROWID;
`;

/** sqlite's own (blocking) wait for a lock per try; longer waits are retried by run(). */
const BUSY_SLICE_MS = 20;

function isBusy(err: unknown): boolean {
  return /database is locked|SQLITE_BUSY/i.test((err as Error | undefined)?.message ?? '');
}

/** A live row: no expiry, or one still in the future (:now). */
const LIVE = '(expires_at IS NULL OR expires_at > :now)';

/** sqlite GLOB with the prefix taken literally: *, ? and [ each in a bracket. */
function globPrefix(prefix: string): string {
  return `${prefix.replace(/[*?[]/g, (c) => `[${c}]`)}*`;
}

export function openSqliteStore(opts: SqliteStoreOptions): Store {
  const where = opts.where ?? opts.file;
  const db = openDatabase(opts.file, opts.busyTimeoutMs, where);
  try {
    return new SqliteStore(db, opts);
  } catch (err) {
    db.close();
    throw new PostsealError('CFG_STORE_UNUSABLE', `${where}: ${opts.file}: ${(err as Error).message}`, { cause: err });
  }
}

function fixFor(file: string): string {
  return `create the folder ${path.dirname(file)} (mkdir -m 700) owned by the user postseal runs as, or set store.sqlite.file to a file in a folder that user can write`;
}

/**
 * What can be known without opening the file (`postseal config check` runs it): its folder
 * exists and postseal may write there, and an existing file may be read and written.
 */
export function checkSqliteFile(file: string, where: string): void {
  const dir = path.dirname(file);
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    // isDir stays false: reported below with the fix.
  }
  if (!isDir) throw new PostsealError('CFG_STORE_UNUSABLE', `${where}: ${file}: the folder ${dir} does not exist; ${fixFor(file)}`);
  try {
    accessSync(dir, constants.W_OK | constants.X_OK);
    if (existsSync(file)) accessSync(file, constants.R_OK | constants.W_OK);
  } catch (err) {
    throw new PostsealError('CFG_STORE_UNUSABLE', `${where}: ${file}: ${(err as Error).message}; ${fixFor(file)}`, { cause: err });
  }
}

/**
 * Opens the file, retrying while another process holds it: the workers of a cluster open it at
 * the same moment at start-up, and switching a new file to WAL is not covered by the busy
 * timeout (seen: "database is locked" from the second worker, which then failed to start).
 * The retries go on for three busy timeouts, at least OPEN_RETRY_MIN_MS: one attempt may
 * itself wait a whole busy timeout (BEGIN IMMEDIATE), and a worker that gives up stops the
 * whole postseal at start-up, which is worse than a slower start (seen once more, in a CI run
 * on a loaded machine, with the deadline at one busy timeout).
 */
function openDatabase(file: string, busyTimeoutMs: number, where: string): DatabaseSync {
  const until = Date.now() + Math.max(OPEN_RETRY_MIN_MS, 3 * busyTimeoutMs);
  for (;;) {
    try {
      return openOnce(file, busyTimeoutMs, where);
    } catch (err) {
      const cause = (err as { cause?: Error }).cause?.message ?? '';
      if (!/database is locked|SQLITE_BUSY/i.test(cause) || Date.now() > until) throw err;
      // Start-up only: a short synchronous wait, with jitter so that workers do not retry in step.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20 + Math.floor(Math.random() * 30));
    }
  }
}

/** Start-up retries of a busy file go on at least this long (openDatabase). */
const OPEN_RETRY_MIN_MS = 15_000;

function openOnce(file: string, busyTimeoutMs: number, where: string): DatabaseSync {
  checkSqliteFile(file, where);
  const fix = fixFor(file);
  try {
    // Created 0600 here: sqlite would use the umask, and gives its -wal and -shm files the database file's mode.
    closeSync(openSync(file, 'a', 0o600));
    const { DatabaseSync: Database } = require('node:sqlite') as typeof import('node:sqlite');
    const db = new Database(file, { timeout: busyTimeoutMs });
    try {
      db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;');
      const version = (db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version;
      if (version > SCHEMA_VERSION) throw new Error(`written by a newer postseal (schema ${version}, this one knows ${SCHEMA_VERSION}); use a new file or upgrade`);
      transaction(db, () => {
        db.exec(SCHEMA);
        db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
      });
    } catch (err) {
      db.close();
      throw err;
    }
    // From here on, a wait for another process's lock is the store's, off the thread (run()).
    db.exec(`PRAGMA busy_timeout = ${BUSY_SLICE_MS}`);
    return db;
  } catch (err) {
    throw new PostsealError('CFG_STORE_UNUSABLE', `${where}: ${file}: cannot be opened (${(err as Error).message}); ${fix}`, { cause: err });
  }
}

/** BEGIN IMMEDIATE takes the write lock first, so a read-then-write is atomic across processes. */
function transaction<T>(db: DatabaseSync, fn: () => T): T {
  db.exec('BEGIN IMMEDIATE');
  try {
    const result = fn();
    db.exec('COMMIT');
    return result;
  } catch (err) {
    if (db.isTransaction) db.exec('ROLLBACK');
    throw err;
  }
}

class SqliteStore implements Store {
  readonly description: string;
  private db: DatabaseSync | undefined;
  private readonly timer: NodeJS.Timeout;
  private readonly q: ReturnType<typeof prepare>;

  constructor(
    db: DatabaseSync,
    private readonly opts: SqliteStoreOptions,
  ) {
    this.db = db;
    this.description = `sqlite ${opts.file}`;
    this.q = prepare(db);
    this.timer = setInterval(() => this.sweep(), opts.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS);
    this.timer.unref();
  }

  private k(key: string): string {
    checkKey(key);
    return this.opts.keyPrefix + key;
  }

  /**
   * Runs one operation; every sqlite failure (SQLITE_BUSY past busyTimeoutMs, disk full) becomes
   * STORE_UNAVAILABLE. sqlite's own busy wait blocks the thread, and with it every session of
   * this worker: it is kept to BUSY_SLICE_MS, and a longer wait for another process's lock
   * happens here, between tries, with the event loop free.
   */
  private async run<T>(op: string, fn: (db: DatabaseSync, now: number) => T): Promise<T> {
    const until = Date.now() + this.opts.busyTimeoutMs;
    for (;;) {
      const db = this.db;
      if (!db) throw unavailable(`${this.description}: ${op}`, 'store closed');
      try {
        return fn(db, Date.now());
      } catch (err) {
        if (!isBusy(err) || Date.now() >= until) throw unavailable(`${this.description}: ${op}`, err);
        await new Promise((r) => setTimeout(r, 5 + Math.floor(Math.random() * 20)));
      }
    }
  }

  async get(key: string): Promise<string | undefined> {
    const k = this.k(key);
    return this.run('get', (_db, now) => (this.q.get.get({ key: k, now }) as { value: string } | undefined)?.value);
  }

  async set(key: string, value: string, opts?: TtlOptions): Promise<void> {
    const k = this.k(key);
    checkValue(value);
    const ttl = ttlOf(opts);
    await this.run('set', (db, now) =>
      transaction(db, () => {
        this.dropList(k);
        this.q.set.run({ key: k, value, expires: ttl === undefined ? null : now + ttl });
      }),
    );
  }

  async setIfAbsent(key: string, value: string, opts?: TtlOptions): Promise<boolean> {
    const k = this.k(key);
    checkValue(value);
    const ttl = ttlOf(opts);
    // One statement: the insert, or the overwrite of an expired row, happens or not, atomically.
    return this.run('setIfAbsent', (_db, now) => Number(this.q.setIfAbsent.run({ key: k, value, expires: ttl === undefined ? null : now + ttl, now }).changes) === 1);
  }

  async deleteIfValue(key: string, value: string): Promise<boolean> {
    const k = this.k(key);
    return this.run('deleteIfValue', (_db, now) => Number(this.q.deleteIfValue.run({ key: k, value, now }).changes) === 1);
  }

  async delete(key: string): Promise<boolean> {
    const k = this.k(key);
    return this.run('delete', (db, now) =>
      transaction(db, () => {
        const value = this.q.deleteValue.get({ key: k }) as { expires_at: number | null } | undefined;
        const list = this.q.getList.get({ key: k }) as { expires_at: number | null } | undefined;
        this.dropList(k);
        return [value, list].some((r) => r !== undefined && (r.expires_at === null || r.expires_at > now));
      }),
    );
  }

  async increment(key: string, by = 1, opts?: TtlOptions): Promise<number> {
    const k = this.k(key);
    checkIncrement(by);
    const ttl = ttlOf(opts);
    return this.run('increment', (db, now) =>
      transaction(db, () => {
        const row = this.q.get.get({ key: k, now }) as { value: string; expires_at: number | null } | undefined;
        const current = row === undefined ? 0 : Number(row.value);
        if (!/^-?\d+$/.test(row?.value ?? '0') || !Number.isSafeInteger(current + by)) throw new Error(`value of ${key} is not an integer or the sum is out of range`);
        const expires = row?.expires_at ?? (ttl === undefined ? null : now + ttl);
        this.q.set.run({ key: k, value: String(current + by), expires });
        return current + by;
      }),
    );
  }

  async append(listKey: string, value: string, opts?: AppendOptions): Promise<number> {
    const k = this.k(listKey);
    checkValue(value);
    const ttl = ttlOf(opts);
    checkCount('maxLength', opts?.maxLength);
    return this.run('append', (db, now) =>
      transaction(db, () => {
        let list = this.q.getList.get({ key: k }) as { head: number; next: number; expires_at: number | null } | undefined;
        if (list && list.expires_at !== null && list.expires_at <= now) {
          this.dropList(k);
          list = undefined;
        }
        const seq = list?.next ?? 0;
        let head = list?.head ?? 0;
        this.q.addItem.run({ key: k, seq, value });
        if (opts?.maxLength !== undefined && seq + 1 - head > opts.maxLength) {
          head = seq + 1 - opts.maxLength;
          this.q.trimItems.run({ key: k, head });
        }
        const expires = ttl === undefined ? (list?.expires_at ?? null) : now + ttl;
        this.q.putList.run({ key: k, head, next: seq + 1, expires });
        return seq + 1 - head;
      }),
    );
  }

  async range(listKey: string, limit?: number): Promise<string[]> {
    const k = this.k(listKey);
    checkCount('range limit', limit);
    return this.run('range', (_db, now) => (this.q.range.all({ key: k, now, limit: limit ?? -1 }) as { value: string }[]).map((r) => r.value));
  }

  async takeAll(listKey: string): Promise<string[]> {
    const k = this.k(listKey);
    return this.run('takeAll', (db, now) =>
      transaction(db, () => {
        const items = (this.q.range.all({ key: k, now, limit: -1 }) as { value: string }[]).map((r) => r.value);
        this.dropList(k);
        return items;
      }),
    );
  }

  async scan(prefix: string, limit?: number): Promise<string[]> {
    const max = scanLimit(limit);
    const pattern = globPrefix(this.opts.keyPrefix + prefix);
    const cut = this.opts.keyPrefix.length;
    return this.run('scan', (_db, now) => (this.q.scan.all({ pattern, now, limit: max }) as { key: string }[]).map((r) => r.key.slice(cut)));
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    const db = this.db;
    this.db = undefined;
    db?.close();
  }

  private dropList(k: string): void {
    this.q.deleteItems.run({ key: k });
    this.q.deleteList.run({ key: k });
  }

  /** Deletes expired rows, a batch per table; a busy file is left for the next sweep. */
  private sweep(): void {
    const db = this.db;
    if (!db) return;
    try {
      const now = Date.now();
      transaction(db, () => {
        this.q.sweepValues.run({ now, batch: SWEEP_BATCH });
        for (const { key } of this.q.expiredLists.all({ now, batch: SWEEP_BATCH }) as { key: string }[]) this.dropList(key);
      });
    } catch (err) {
      this.opts.log?.warn({ err, store: this.description }, 'store expiry sweep failed; the next sweep tries again');
    }
  }
}

function prepare(db: DatabaseSync): Record<string, StatementSync> {
  const s = (sql: string) => db.prepare(sql);
  return {
    get: s(`SELECT value, expires_at FROM kv WHERE key = :key AND ${LIVE}`),
    set: s('INSERT INTO kv (key, value, expires_at) VALUES (:key, :value, :expires) ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at'),
    setIfAbsent: s(
      'INSERT INTO kv (key, value, expires_at) VALUES (:key, :value, :expires) ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at WHERE kv.expires_at IS NOT NULL AND kv.expires_at <= :now',
    ),
    deleteValue: s('DELETE FROM kv WHERE key = :key RETURNING expires_at'),
    deleteIfValue: s('DELETE FROM kv WHERE key = :key AND value = :value AND (expires_at IS NULL OR expires_at > :now)'),
    getList: s('SELECT head, next, expires_at FROM lists WHERE key = :key'),
    putList: s(
      'INSERT INTO lists (key, head, next, expires_at) VALUES (:key, :head, :next, :expires) ON CONFLICT (key) DO UPDATE SET head = excluded.head, next = excluded.next, expires_at = excluded.expires_at',
    ),
    addItem: s('INSERT INTO list_items (key, seq, value) VALUES (:key, :seq, :value)'),
    trimItems: s('DELETE FROM list_items WHERE key = :key AND seq < :head'),
    range: s(`SELECT value FROM list_items WHERE key = :key AND EXISTS (SELECT 1 FROM lists WHERE key = :key AND ${LIVE}) ORDER BY seq LIMIT :limit`),
    deleteItems: s('DELETE FROM list_items WHERE key = :key'),
    deleteList: s('DELETE FROM lists WHERE key = :key'),
    scan: s(`SELECT key FROM kv WHERE key GLOB :pattern AND ${LIVE} UNION ALL SELECT key FROM lists WHERE key GLOB :pattern AND ${LIVE} LIMIT :limit`),
    sweepValues: s('DELETE FROM kv WHERE key IN (SELECT key FROM kv WHERE expires_at <= :now LIMIT :batch)'),
    expiredLists: s('SELECT key FROM lists WHERE expires_at <= :now LIMIT :batch'),
  };
}
