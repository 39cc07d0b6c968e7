/**
 * The quarantine store on a real folder, indexed in both store back-ends (sqlite, and a real
 * redis-server): what is held is the message byte for byte with its whole envelope; files and
 * folder have private modes; a Postfix retry is not held twice; limits and a full or
 * unwritable folder fail with their codes and leave nothing behind; the sweep expires.
 */
import { chownSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { isPostsealError } from '../../src/errors';
import { createLogger } from '../../src/lib/log';
import { Quarantine, type HoldInput, type QuarantineSettings } from '../../src/quarantine/quarantine';
import { openRedisStore } from '../../src/store/redis';
import { openSqliteStore } from '../../src/store/sqlite';
import type { Store } from '../../src/store/store';
import { startRedisServer, type RedisServer } from '../helpers/redis-server';

const log = createLogger('silent');
const DAY = 86400_000;
const message = Buffer.from('Received: from mx.remote.test\r\nFrom: <a@remote.test>\r\nSubject: held\r\n\r\nbody \xff\r\n', 'latin1');

function input(over: Partial<HoldInput> = {}, bytes = message): HoldInput {
  return {
    session: 's1',
    queueId: '4ABC123',
    bank: 'default',
    decidedBy: 'default',
    reason: 'DMARC_FAIL_QUARANTINE',
    findings: ['SPF_FAIL', 'DMARC_FAIL_QUARANTINE(remote.test p=quarantine)'],
    envelope: {
      mailFrom: 'a@remote.test',
      body: '8BITMIME',
      smtputf8: false,
      ret: 'HDRS',
      envid: 'env+2Bid',
      recipients: [{ address: 'bob@example.test', notify: 'SUCCESS,FAILURE', orcpt: 'rfc822;bob+2Bx@example.test' }, { address: 'carol@other.test' }],
    },
    client: { addr: '198.51.100.7', name: 'mx.remote.test', helo: 'mx.remote.test', ident: '4ABC123' },
    peer: '127.0.0.1',
    size: bytes.length,
    raw: async function* () {
      yield bytes.subarray(0, 10);
      yield bytes.subarray(10);
    },
    subject: 'held',
    ...over,
  };
}

function settings(dir: string, over: Partial<QuarantineSettings> = {}): QuarantineSettings {
  return { dir, maxMessageSizeBytes: 1 << 20, maxTotalBytes: 0, minFreeBytes: 0, maxAgeDays: 30, sweepIntervalMs: 60000, ...over };
}

const backends: [string, () => Promise<{ store: Store; done: () => Promise<void> }>][] = [
  [
    'sqlite',
    async () => {
      const store = openSqliteStore({ file: path.join(mkdtempSync(path.join(tmpdir(), 'q-db-')), 'q.db'), keyPrefix: 'ps:', busyTimeoutMs: 1000 });
      return { store, done: () => store.close() };
    },
  ],
  [
    'redis',
    async () => {
      redis ??= await startRedisServer();
      const store = await openRedisStore({ url: redis.url, keyPrefix: `ps${++redisPrefix}:`, timeoutMs: 1000 });
      return { store, done: () => store.close() };
    },
  ],
];
let redis: RedisServer | undefined;
let redisPrefix = 0;
afterAll(async () => {
  await redis?.stop();
});

describe.each(backends)('the quarantine indexed in %s', (_name, open) => {
  let store: Store;
  let done: () => Promise<void>;
  let dir: string;
  let now: number;
  let q: Quarantine;
  beforeEach(async () => {
    ({ store, done } = await open());
    dir = path.join(mkdtempSync(path.join(tmpdir(), 'q-')), 'held');
    now = Date.parse('2026-12-07T10:00:00Z');
    q = new Quarantine(settings(dir), store, log, () => now);
  });
  afterEach(() => done());

  it('holds the message byte for byte with its whole envelope, in a 0700 folder of 0600 files', async () => {
    const { id, duplicate } = await q.hold(input());
    expect(duplicate).toBe(false);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(readdirSync(dir).sort()).toEqual([`${id}.eml`, `${id}.json`]);
    for (const f of readdirSync(dir)) expect(statSync(path.join(dir, f)).mode & 0o777).toBe(0o600);
    expect(readFileSync(path.join(dir, `${id}.eml`))).toEqual(message);
    const held = await q.get(id);
    expect(held).toMatchObject({
      id,
      heldAt: '2026-12-07T10:00:00.000Z',
      queueId: '4ABC123',
      reason: 'DMARC_FAIL_QUARANTINE',
      envelope: input().envelope,
      client: input().client,
      released: [],
    });
  });

  it('answers a Postfix retry of the same message with the same id, holding it once', async () => {
    const first = await q.hold(input());
    const retry = await q.hold(input({ session: 's2-another-session' }));
    expect(retry).toEqual({ id: first.id, duplicate: true });
    expect(readdirSync(dir)).toHaveLength(2);
    expect(await q.list()).toHaveLength(1);
    // Another message (another queue id) is another id.
    expect((await q.hold(input({ queueId: '4DEF456', client: { ...input().client, ident: '4DEF456' } }))).id).not.toBe(first.id);
  });

  it('lists newest first and filters by time, finding and recipient', async () => {
    const a = await q.hold(input());
    now += 3600_000;
    const b = await q.hold(
      input({ queueId: 'B', reason: 'VIRUS_FOUND', findings: ['VIRUS_FOUND(Eicar)'], envelope: { ...input().envelope, recipients: [{ address: 'dave@example.test' }] } }),
    );
    expect((await q.list()).map((e) => e.id)).toEqual([b.id, a.id]);
    expect((await q.list({ since: new Date(now - 60_000) })).map((e) => e.id)).toEqual([b.id]);
    expect((await q.list({ reason: 'dmarc' })).map((e) => e.id)).toEqual([a.id]);
    expect((await q.list({ reason: 'eicar' })).map((e) => e.id)).toEqual([b.id]);
    expect((await q.list({ rcpt: 'other.test' })).map((e) => e.id)).toEqual([a.id]);
    expect((await q.list({ rcpt: 'dave@example.test' })).map((e) => e.id)).toEqual([b.id]);
    expect((await q.list({ rcpt: 'example.test' })).map((e) => e.id)).toEqual([b.id, a.id]);
  });

  it('records a release with the held message and deletes it whole', async () => {
    const { id } = await q.hold(input());
    await q.recordRelease(id, { at: '2026-12-07T11:00:00.000Z', to: ['bob@example.test'], reply: '250 2.0.0 Ok' });
    expect((await q.get(id))?.released).toEqual([{ at: '2026-12-07T11:00:00.000Z', to: ['bob@example.test'], reply: '250 2.0.0 Ok' }]);
    expect((await q.list())[0].released).toHaveLength(1);
    expect(await q.delete(id)).toBe(true);
    expect(readdirSync(dir)).toEqual([]);
    expect(await q.list()).toEqual([]);
    expect(await q.get(id)).toBeUndefined();
    expect(await q.delete(id)).toBe(false);
  });

  it('refuses a message over maxMessageSizeBytes with QUARANTINE_TOO_BIG, writing nothing', async () => {
    const big = Buffer.alloc(2048, 'x');
    const small = new Quarantine(settings(dir, { maxMessageSizeBytes: 1024 }), store, log);
    const err = await small.hold(input({}, big)).catch((e: unknown) => e);
    expect(isPostsealError(err, 'QUARANTINE_TOO_BIG')).toBe(true);
    expect(readdirSync(path.dirname(dir))).toEqual([]);
  });

  it('refuses with QUARANTINE_FAILED when the folder is full (minFreeBytes), writing nothing', async () => {
    const full = new Quarantine(settings(dir, { minFreeBytes: 1099511627776 }), store, log);
    const err = await full.hold(input()).catch((e: unknown) => e);
    expect(isPostsealError(err, 'QUARANTINE_FAILED')).toBe(true);
    expect((err as Error).message).toMatch(/full: \d+ bytes free/);
    expect(readdirSync(dir)).toEqual([]);
    expect(await q.list()).toEqual([]);
  });

  it('refuses with QUARANTINE_FAILED when the folder cannot be made (a file in its way)', async () => {
    const file = path.join(path.dirname(dir), 'not-a-folder');
    writeFileSync(file, '');
    const blocked = new Quarantine(settings(path.join(file, 'held')), store, log);
    const err = await blocked.hold(input()).catch((e: unknown) => e);
    expect(isPostsealError(err, 'QUARANTINE_FAILED')).toBe(true);
    expect(((err as Error).cause as NodeJS.ErrnoException).code).toBe('ENOTDIR');
  });

  it('subtracts an expired message from the held bytes once when two workers sweep it at the same time', async () => {
    // Every worker sweeps on the same interval: both find the message expired and delete it.
    const counted = settings(dir, { maxTotalBytes: 1 << 30 });
    const workers = [new Quarantine(counted, store, log, () => now), new Quarantine(counted, store, log, () => now)];
    const kept = await workers[0].hold(input());
    const old = await workers[0].hold(input({ queueId: 'OLD' }));
    const past = (now - 31 * DAY) / 1000;
    utimesSync(path.join(dir, `${old.id}.json`), past, past);
    const swept = await Promise.all(workers.map((w) => w.sweep()));
    expect(swept.map((c) => c.expired).reduce((a, b) => a + b)).toBe(1);
    expect(await store.get('quarantine-bytes')).toBe(String(message.length));
    expect(await workers[1].delete(kept.id)).toBe(true);
    expect(await store.get('quarantine-bytes')).toBe('0');
  });

  it('subtracts a deleted message from the held bytes though its release record cannot be read', async () => {
    const counted = new Quarantine(settings(dir, { maxTotalBytes: 1 << 30 }), store, log, () => now);
    const { id } = await counted.hold(input());
    // Not JSON: get() throws as for a root-owned record (EACCES, which a test run as root cannot make).
    writeFileSync(path.join(dir, `${id}.released.json`), '[{"at":');
    await expect(counted.get(id)).rejects.toThrow();
    expect(await counted.delete(id)).toBe(true);
    expect(await store.get('quarantine-bytes')).toBe('0');
  });

  it("removes a crashed release's lock file with the message", async () => {
    const { id } = await q.hold(input());
    writeFileSync(path.join(dir, `${id}.releasing`), '4242\n');
    expect(await q.delete(id)).toBe(true);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('does not read an unreadable release record as "never released" (that would release it twice)', async () => {
    const { id } = await q.hold(input());
    // A folder in the record's place: what an EACCES is to a non-root user, for a test run as root.
    mkdirSync(path.join(dir, `${id}.released.json`));
    const err = await q.get(id).catch((e: unknown) => e);
    expect(isPostsealError(err, 'QUARANTINE_FAILED')).toBe(true);
    expect((err as Error).message).toContain(`${id}.released.json (EISDIR)`);
  });

  (process.getuid?.() === 0 ? it : it.skip)("gives the files root writes (sudo postseal quarantine release) to the folder's owner", async () => {
    mkdirSync(dir, { mode: 0o700 });
    chownSync(dir, 65534, 65534);
    const { id } = await q.hold(input());
    await q.recordRelease(id, { at: '2026-12-07T11:00:00.000Z', to: ['bob@example.test'], reply: '250 2.0.0 Ok' });
    for (const f of readdirSync(dir)) expect({ f, uid: statSync(path.join(dir, f)).uid, gid: statSync(path.join(dir, f)).gid }).toEqual({ f, uid: 65534, gid: 65534 });
  });

  it('keeps the index entries of messages held while a sweep runs (list shows them at once, not an hour later)', async () => {
    for (let i = 0; i < 200; i++) await q.hold(input({ queueId: `OLD${i}` }));
    const sweeping = q.sweep();
    const fresh = await Promise.all(Array.from({ length: 5 }, (_, i) => q.hold(input({ queueId: `NEW${i}` }))));
    await sweeping;
    const listed = new Set((await q.list()).map((e) => e.id));
    expect(fresh.filter((h) => !listed.has(h.id))).toEqual([]);
  });

  it("leaves another host's index entries alone when the hosts share the store but not a folder", async () => {
    const otherDir = path.join(mkdtempSync(path.join(tmpdir(), 'q-')), 'held');
    const mx2 = new Quarantine(settings(otherDir), store, log, () => now, 'mx2.example.test');
    const here = new Quarantine(settings(dir), store, log, () => now, 'mx1.example.test');
    const mine = await here.hold(input());
    const theirs = await mx2.hold(input({ queueId: 'MX2' }));
    expect(await here.sweep()).toMatchObject({ dropped: 0 });
    expect((await here.list()).map((e) => [e.id, e.host]).sort()).toEqual(
      [
        [mine.id, 'mx1.example.test'],
        [theirs.id, 'mx2.example.test'],
      ].sort(),
    );
  });

  it('answers the retry of a held message whose release record cannot be read as a duplicate, not a failure (a tempfail at every retry, until Postfix bounced it)', async () => {
    const first = await q.hold(input());
    mkdirSync(path.join(dir, `${first.id}.released.json`));
    expect(await q.hold(input({ session: 's2-another-session' }))).toEqual({ id: first.id, duplicate: true });
  });

  it('sweeps expired messages, old leftovers (of crashed holds, deletes and releases) and stale index entries, and restores lost index entries', async () => {
    const old = await q.hold(input());
    const young = await q.hold(input({ queueId: 'Y' }));
    const past = (now - 31 * DAY) / 1000;
    utimesSync(path.join(dir, `${old.id}.json`), past, past);
    writeFileSync(path.join(dir, '.tmp-1-00'), 'partial');
    writeFileSync(path.join(dir, 'aaaaaaaaaaaaaaaaaaaaaaaa.eml'), 'no record');
    // What a crash in a delete or a release leaves of a message no longer held.
    const crashed = ['cccccccccccccccccccccccc.released.json', 'cccccccccccccccccccccccc.releasing', 'cccccccccccccccccccccccc.releasing.takeover'];
    for (const f of crashed) writeFileSync(path.join(dir, f), '1\n');
    for (const f of ['.tmp-1-00', 'aaaaaaaaaaaaaaaaaaaaaaaa.eml', ...crashed]) utimesSync(path.join(dir, f), (now - 2 * 3600_000) / 1000, (now - 2 * 3600_000) / 1000);
    // A fresh lock of a held message is a release running: left alone.
    writeFileSync(path.join(dir, `${young.id}.releasing`), '1\n');
    // A fresh temp file is a hold in progress: left alone.
    writeFileSync(path.join(dir, '.tmp-2-00'), 'writing');
    utimesSync(path.join(dir, '.tmp-2-00'), now / 1000, now / 1000);
    await store.delete(`quarantine:${young.id}`);
    await store.set('quarantine:bbbbbbbbbbbbbbbbbbbbbbbb', '{}');
    const lines: Record<string, unknown>[] = [];
    const logged = new Quarantine(settings(dir), store, createLogger('info', { write: (l: string) => void lines.push(JSON.parse(l)) }), () => now);
    expect(await logged.sweep()).toEqual({ expired: 1, leftovers: 5, restored: 1, dropped: 1 });
    expect(lines.filter((l) => l.quarantineId === old.id)).toEqual([
      expect.objectContaining({ msg: 'held message expired and deleted without being released', queueId: '4ABC123', reason: 'DMARC_FAIL_QUARANTINE', released: false }),
    ]);
    expect(readdirSync(dir).sort()).toEqual(['.tmp-2-00', `${young.id}.eml`, `${young.id}.json`, `${young.id}.releasing`].sort());
    expect((await q.list()).map((e) => e.id)).toEqual([young.id]);
  });
});
