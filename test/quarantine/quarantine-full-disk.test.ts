/**
 * The quarantine on a real file system that fills up (a small tmpfs, test/helpers/tmpfs.ts),
 * with quarantine.minFreeBytes 0 so that the disk itself runs out: a hold that does not fit is
 * QUARANTINE_FAILED and leaves no file, no index entry and no bytes counted against
 * maxTotalBytes, never a message held with its tail missing; once space returns the retry is
 * held whole, once. A release onto a full disk delivers nothing and leaves nothing behind.
 */
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { isPostsealError } from '../../src/errors';
import { createLogger } from '../../src/lib/log';
import { Quarantine } from '../../src/quarantine/quarantine';
import { releaseHeld } from '../../src/quarantine/release';
import { openSqliteStore } from '../../src/store/sqlite';
import type { Store } from '../../src/store/store';
import { loadTestBank } from '../helpers/banks';
import { heldInput } from '../helpers/quarantine';
import { startSink, type Sink } from '../helpers/sink';
import { mountSmallDisk, type SmallDisk } from '../helpers/tmpfs';

const PAGE = 4096;
const log = createLogger('silent');
/** Whole pages, so that the space it takes on tmpfs is known. */
const message = (pages: number) => Buffer.concat([Buffer.from('Subject: held\r\n\r\n'), Buffer.alloc(pages * PAGE - 17, 'x')]);

let disk: SmallDisk;
let store: Store;
let sink: Sink;
let q: Quarantine;
beforeAll(async () => {
  disk = mountSmallDisk(256 * 1024);
  // The index lives elsewhere: this file is about the folder.
  store = openSqliteStore({ file: path.join(mkdtempSync(path.join(tmpdir(), 'q-full-db-')), 'q.db'), keyPrefix: 'ps:', busyTimeoutMs: 1000 });
  sink = await startSink();
  q = new Quarantine({ dir: disk.dir, maxMessageSizeBytes: 0, maxTotalBytes: 1 << 30, minFreeBytes: 0, maxAgeDays: 30, sweepIntervalMs: 60000 }, store, log);
});
afterEach(() => disk?.free());
afterAll(async () => {
  await sink?.close();
  await store?.close();
  disk?.unmount();
});

const files = () => readdirSync(disk.dir).filter((n) => n !== '.filler');
const heldBytes = async () => Number((await store.get('quarantine-bytes')) ?? 0);

it('a message that only partly fits is QUARANTINE_FAILED with nothing held, listed or counted', async () => {
  await disk.fill(10 * PAGE);
  const raw = message(20);
  const err = await q.hold(heldInput(raw, { queueId: 'PART1' })).catch((e) => e);
  expect(isPostsealError(err, 'QUARANTINE_FAILED')).toBe(true);
  expect(err.message).toContain(disk.dir);
  expect(files()).toEqual([]);
  expect(await q.list()).toEqual([]);
  expect(await heldBytes()).toBe(0);
});

it('a message whose record does not fit after it is QUARANTINE_FAILED and its .eml goes too; the retry is held once space returns', async () => {
  const raw = message(4);
  // Room for the message's pages, none for its record.
  await disk.fill(4 * PAGE);
  const err = await q.hold(heldInput(raw, { queueId: 'META1' })).catch((e) => e);
  expect(isPostsealError(err, 'QUARANTINE_FAILED')).toBe(true);
  expect(files()).toEqual([]);
  await disk.free();
  const { id, duplicate } = await q.hold(heldInput(raw, { queueId: 'META1' }));
  expect(duplicate).toBe(false);
  expect(readFileSync(path.join(disk.dir, `${id}.eml`)).equals(raw)).toBe(true);
  expect((await q.list()).map((e) => e.id)).toEqual([id]);
  expect(await heldBytes()).toBe(raw.length);
  expect(await q.delete(id)).toBe(true);
});

it('a release onto a full disk delivers nothing and leaves no file; with space back it delivers and is recorded', async () => {
  const raw = message(2);
  const { id } = await q.hold(heldInput(raw, { queueId: 'REL1' }));
  const target = loadTestBank({ forward: { host: '127.0.0.1', port: sink.port } }).forward;
  const before = sink.received.length;
  await disk.fill();
  const failed = await releaseHeld(q, (await q.get(id))!, target, { heloName: 'filter.test', log });
  expect(failed).toMatchObject({ ok: false, accepted: [], reply: expect.stringContaining('ENOSPC') });
  expect(sink.received.length).toBe(before);
  expect(files().sort()).toEqual([`${id}.eml`, `${id}.json`]);
  await disk.free();
  expect(await releaseHeld(q, (await q.get(id))!, target, { heloName: 'filter.test', log })).toMatchObject({ ok: true });
  expect(sink.received.length).toBe(before + 1);
  expect((await q.get(id))!.released).toHaveLength(1);
  await q.delete(id);
});
