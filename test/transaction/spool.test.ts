import { mkdtempSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { isPostsealError } from '../../src/errors';
import { spoolFrom, spoolFromChunks, sweepStaleSpools } from '../../src/transaction/spool';
import { readAll } from '../helpers/streams';

const dir = () => mkdtempSync(path.join(tmpdir(), 'spool-test-'));
const chunks = (n: number, size: number) => Readable.from(Array.from({ length: n }, (_, i) => Buffer.alloc(size, 65 + (i % 26))));

/** This process's open descriptors on files in `folder` (Linux /proc). */
const openIn = (folder: string) =>
  readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`).startsWith(folder);
    } catch {
      return false;
    }
  });

describe('spool', () => {
  it('keeps a small message in memory', async () => {
    const d = dir();
    const s = await spoolFrom(chunks(4, 100), { dir: d, memoryThresholdBytes: 1000, maxSizeBytes: 10_000 });
    expect(s.size).toBe(400);
    expect(readdirSync(d)).toEqual([]);
    expect((await readAll(s.openRaw(390))).length).toBe(10);
  });

  it('moves a large message to a file, reads it back whole, and removes the file on dispose', async () => {
    const d = dir();
    const s = await spoolFrom(chunks(20, 1000), { dir: d, memoryThresholdBytes: 5000, maxSizeBytes: 100_000 });
    expect(readdirSync(d)).toHaveLength(1);
    const all = await readAll(s.openRaw());
    expect(all.length).toBe(20_000);
    expect(all[19_999]).toBe(65 + 19);
    expect(s.head.length).toBe(20_000);
    await s.dispose();
    expect(readdirSync(d)).toEqual([]);
  });

  it('reads the whole oversized message, then fails with MESSAGE_TOO_BIG and leaves no file', async () => {
    const d = dir();
    const src = chunks(50, 1000);
    const err = await spoolFrom(src, { dir: d, memoryThresholdBytes: 2000, maxSizeBytes: 10_000 }).catch((e) => e);
    expect(isPostsealError(err, 'MESSAGE_TOO_BIG')).toBe(true);
    expect(src.readableEnded).toBe(true);
    expect(readdirSync(d)).toEqual([]);
  });

  it('a spool file that cannot be written is SPOOL_FAILED, and the rest of the message is not read', async () => {
    const src = chunks(50, 1000);
    const err = await spoolFrom(src, { dir: path.join(dir(), 'missing'), memoryThresholdBytes: 2000, maxSizeBytes: 100_000 }).catch((e) => e);
    expect(isPostsealError(err, 'SPOOL_FAILED')).toBe(true);
    expect(src.destroyed).toBe(true);
  });

  it('a source that closes without an error before its end, while the spool holds it back, is UPSTREAM_ABORTED and leaves no file', async () => {
    const d = dir();
    const src = new Readable({ read() {} });
    for (let i = 0; i < 16; i++) src.push(Buffer.alloc(64 * 1024, 0x41));
    const p = spoolFrom(src, { dir: d, memoryThresholdBytes: 0, maxSizeBytes: 10_000_000 });
    setTimeout(() => src.destroy(), 20);
    const err = await p.catch((e) => e);
    expect(isPostsealError(err, 'UPSTREAM_ABORTED')).toBe(true);
    expect(readdirSync(d)).toEqual([]);
  });

  it('a source handed over already destroyed is UPSTREAM_ABORTED; one already paused is read whole', async () => {
    const gone = chunks(2, 10);
    gone.destroy();
    const err = await spoolFrom(gone, { dir: dir(), memoryThresholdBytes: 1000, maxSizeBytes: 1000 }).catch((e) => e);
    expect(isPostsealError(err, 'UPSTREAM_ABORTED')).toBe(true);
    const paused = chunks(3, 10).pause();
    expect((await spoolFrom(paused, { dir: dir(), memoryThresholdBytes: 1000, maxSizeBytes: 1000 })).size).toBe(30);
  });

  it('a spool file is opened only when read, and closed when its reader stops early', async () => {
    const d = dir();
    const s = await spoolFrom(chunks(20, 1000), { dir: d, memoryThresholdBytes: 5000, maxSizeBytes: 100_000 });
    s.openRaw();
    // Time for an eager open (fs.createReadStream opens asynchronously) to show.
    await new Promise((r) => setTimeout(r, 20));
    expect(openIn(d)).toEqual([]);
    for await (const chunk of s.openRaw(100)) {
      expect(chunk.length).toBeGreaterThan(0);
      expect(openIn(d)).toHaveLength(1);
      break;
    }
    expect(openIn(d)).toEqual([]);
    await s.dispose();
  });

  it('a source that breaks off is UPSTREAM_ABORTED and leaves no file', async () => {
    const d = dir();
    const src = new Readable({ read() {} });
    src.push(Buffer.alloc(8000));
    const p = spoolFrom(src, { dir: d, memoryThresholdBytes: 1000, maxSizeBytes: 100_000 });
    setTimeout(() => src.destroy(Object.assign(new Error('gone'), { code: 'ECONNECTION' })), 20);
    const err = await p.catch((e) => e);
    expect(isPostsealError(err, 'UPSTREAM_ABORTED')).toBe(true);
    expect(readdirSync(d)).toEqual([]);
  });

  it('sources that fail while the spool file is still being opened leave no descriptor and no file', async () => {
    const d = dir();
    const FAILURES = 20;
    for (let i = 0; i < FAILURES; i++) {
      // The first chunk passes the threshold and starts the open; the error follows within microtasks, before the open completes.
      const src = Readable.from(
        (async function* () {
          yield Buffer.alloc(4000, 0x41);
          throw Object.assign(new Error('gone'), { code: 'ECONNECTION' });
        })(),
      );
      const err = await spoolFrom(src, { dir: d, memoryThresholdBytes: 1000, maxSizeBytes: 100_000 }).catch((e) => e);
      expect(isPostsealError(err, 'UPSTREAM_ABORTED')).toBe(true);
    }
    // spoolFrom has returned: nothing may still be pending that opens or keeps a file.
    await new Promise((r) => setTimeout(r, 50));
    expect(openIn(d)).toEqual([]);
    expect(readdirSync(d)).toEqual([]);
  });

  it('an aborted signal stops the copy, destroys the source, removes the file and rejects with its reason', async () => {
    const d = dir();
    const src = new Readable({ read() {} });
    src.push(Buffer.alloc(8000));
    const ac = new AbortController();
    const p = spoolFrom(src, { dir: d, memoryThresholdBytes: 1000, maxSizeBytes: 100_000, signal: ac.signal });
    const reason = new Error('stage timed out');
    setTimeout(() => ac.abort(reason), 20);
    expect(await p.catch((e) => e)).toBe(reason);
    expect(src.destroyed).toBe(true);
    expect(readdirSync(d)).toEqual([]);
  });
});

describe('spoolFromChunks (a rewritten message)', () => {
  /** Chunks of `size` bytes, `n` of them; `closed` says whether the reader closed the source (return()). */
  function source(n: number, size: number, opts: { failAt?: number; pauseAt?: number } = {}) {
    const state = { closed: false, read: 0 };
    async function* gen(): AsyncGenerator<Buffer> {
      try {
        for (let i = 0; i < n; i++) {
          if (i === opts.failAt) throw new Error('source failed');
          if (i === opts.pauseAt) await new Promise((r) => setTimeout(r, 200));
          state.read++;
          yield Buffer.alloc(size, 65 + (i % 26));
        }
      } finally {
        state.closed = true;
      }
    }
    return { chunks: gen(), state };
  }

  it('keeps a message that ends within the threshold as one buffer in memory, its head a view of it', async () => {
    const d = dir();
    const s = await spoolFromChunks(source(4, 100).chunks, { dir: d, memoryThresholdBytes: 1000, maxSizeBytes: 10_000, headBytes: 150 });
    expect(s.size).toBe(400);
    expect(s.head.length).toBe(150);
    expect(readdirSync(d)).toEqual([]);
    const all = await readAll(s.openRaw());
    expect(all.length).toBe(400);
    expect(all.subarray(0, 150).buffer).toBe(s.head.buffer);
  });

  it('writes one that passes the threshold to a file, the chunks held so far first, and reads it back whole', async () => {
    const d = dir();
    const s = await spoolFromChunks(source(20, 1000).chunks, { dir: d, memoryThresholdBytes: 5000, maxSizeBytes: 100_000 });
    expect(readdirSync(d)).toHaveLength(1);
    const all = await readAll(s.openRaw());
    expect(all.length).toBe(20_000);
    for (let i = 0; i < 20; i++) expect([i, all[i * 1000], all[i * 1000 + 999]]).toEqual([i, 65 + i, 65 + i]);
    await s.dispose();
    expect(readdirSync(d)).toEqual([]);
  });

  it('is MESSAGE_TOO_BIG past maxSizeBytes, in memory or not, and leaves no file', async () => {
    const d = dir();
    for (const threshold of [1_000_000, 2000]) {
      const err = await spoolFromChunks(source(50, 1000).chunks, { dir: d, memoryThresholdBytes: threshold, maxSizeBytes: 10_000 }).catch((e) => e);
      expect([threshold, isPostsealError(err, 'MESSAGE_TOO_BIG')]).toEqual([threshold, true]);
    }
    expect(readdirSync(d)).toEqual([]);
  });

  it('stops at an aborted signal, before or after the threshold: the source closed, no file, its reason', async () => {
    for (const threshold of [1_000_000, 1000]) {
      const d = dir();
      const { chunks: src, state } = source(10, 800, { pauseAt: 3 });
      const ac = new AbortController();
      const reason = new Error('stage timed out');
      setTimeout(() => ac.abort(reason), 50);
      expect(await spoolFromChunks(src, { dir: d, memoryThresholdBytes: threshold, maxSizeBytes: 100_000, signal: ac.signal }).catch((e) => e)).toBe(reason);
      await new Promise((r) => setTimeout(r, 250));
      expect([threshold, state.closed, state.read < 10]).toEqual([threshold, true, true]);
      expect(openIn(d)).toEqual([]);
      expect(readdirSync(d)).toEqual([]);
    }
  });

  it('closes the source when the signal aborts while the chunk that passes the threshold is read', async () => {
    const d = dir();
    const { chunks: src, state } = source(10, 800, { pauseAt: 1 });
    const ac = new AbortController();
    const reason = new Error('stage timed out');
    setTimeout(() => ac.abort(reason), 50);
    expect(await spoolFromChunks(src, { dir: d, memoryThresholdBytes: 1000, maxSizeBytes: 100_000, signal: ac.signal }).catch((e) => e)).toBe(reason);
    expect([state.closed, state.read]).toEqual([true, 2]);
    expect(readdirSync(d)).toEqual([]);
  });

  it('passes a failing source on, and leaves no file when the failure comes after the threshold', async () => {
    const d = dir();
    expect((await spoolFromChunks(source(10, 800, { failAt: 2 }).chunks, { dir: d, memoryThresholdBytes: 1_000_000, maxSizeBytes: 100_000 }).catch((e) => e)).message).toBe(
      'source failed',
    );
    const late = await spoolFromChunks(source(10, 800, { failAt: 5 }).chunks, { dir: d, memoryThresholdBytes: 1000, maxSizeBytes: 100_000 }).catch((e) => e);
    expect(late).toBeInstanceOf(Error);
    expect(readdirSync(d)).toEqual([]);
  });
});

describe('sweepStaleSpools', () => {
  it('removes spool files of dead processes and keeps those of live ones and other files', async () => {
    const d = dir();
    const dead = 'postseal-999999999-0123456789abcdef.eml';
    const live = `postseal-${process.pid}-0123456789abcdef.eml`;
    for (const f of [dead, live, 'unrelated.eml']) writeFileSync(path.join(d, f), 'x');
    expect(await sweepStaleSpools(d)).toEqual([dead]);
    expect(readdirSync(d).sort()).toEqual([live, 'unrelated.eml'].sort());
  });
});
