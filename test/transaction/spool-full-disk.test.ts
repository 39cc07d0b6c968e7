/**
 * The spool on a real file system that fills up (a small tmpfs, test/helpers/tmpfs.ts): a
 * message cut off by a full disk is SPOOL_FULL and leaves no file, whether the disk fills
 * before its first byte or in its middle, and never comes back as a whole spool with its tail
 * missing; when space returns, the same message spools whole.
 */
import { readdirSync } from 'node:fs';
import { Readable } from 'node:stream';
import { isPostsealError } from '../../src/errors';
import { spoolFrom } from '../../src/transaction/spool';
import { readAll } from '../helpers/streams';
import { mountSmallDisk, type SmallDisk } from '../helpers/tmpfs';

const DISK_BYTES = 256 * 1024;
const message = (size: number) => Buffer.from(Array.from({ length: size }, (_, i) => 65 + (i % 26)));
/** In chunks of `chunk` bytes, as DATA comes in. */
const source = (data: Buffer, chunk: number) => Readable.from(Array.from({ length: Math.ceil(data.length / chunk) }, (_, i) => data.subarray(i * chunk, (i + 1) * chunk)));
const spoolFiles = (dir: string) => readdirSync(dir).filter((n) => n.startsWith('postseal-'));

let disk: SmallDisk;
beforeAll(() => {
  disk = mountSmallDisk(DISK_BYTES);
});
afterEach(() => disk?.free());
afterAll(() => disk?.unmount());

const opts = () => ({ dir: disk.dir, memoryThresholdBytes: 1024, maxSizeBytes: 10 * DISK_BYTES });

it('a disk that is full before the first byte is written is SPOOL_FULL naming the folder, and leaves no file', async () => {
  await disk.fill();
  const err = await spoolFrom(source(message(64 * 1024), 16 * 1024), opts()).catch((e) => e);
  expect(isPostsealError(err, 'SPOOL_FULL')).toBe(true);
  expect(err.message).toContain(disk.dir);
  expect((err.cause as NodeJS.ErrnoException).code).toBe('ENOSPC');
  expect(spoolFiles(disk.dir)).toEqual([]);
});

it('a disk that fills in the middle of the message is SPOOL_FULL, and leaves no file', async () => {
  await disk.fill(100 * 1024);
  const err = await spoolFrom(source(message(200 * 1024), 16 * 1024), opts()).catch((e) => e);
  expect(isPostsealError(err, 'SPOOL_FULL')).toBe(true);
  expect(spoolFiles(disk.dir)).toEqual([]);
});

it('a last chunk that only partly fits is SPOOL_FULL, not a spool with its tail missing', async () => {
  // One chunk larger than the space left: write(2) writes what fits and returns a short count.
  await disk.fill(100 * 1024);
  const data = message(150 * 1024);
  const spool = await spoolFrom(source(data, data.length), opts()).catch((e) => e);
  if (!isPostsealError(spool)) {
    const got = await readAll(spool.openRaw());
    await spool.dispose();
    throw new Error(`spooled ${got.length} of ${data.length} bytes as a whole message of ${spool.size}`);
  }
  expect(isPostsealError(spool, 'SPOOL_FULL')).toBe(true);
  expect(spoolFiles(disk.dir)).toEqual([]);
});

it('once space returns, the same message spools whole', async () => {
  await disk.fill(100 * 1024);
  const data = message(150 * 1024);
  await expect(spoolFrom(source(data, 16 * 1024), opts())).rejects.toMatchObject({ code: 'SPOOL_FULL' });
  await disk.free();
  const spool = await spoolFrom(source(data, 16 * 1024), opts());
  try {
    expect((await readAll(spool.openRaw())).equals(data)).toBe(true);
  } finally {
    await spool.dispose();
  }
  expect(spoolFiles(disk.dir)).toEqual([]);
});
