/**
 * The spool: message bytes as received, in memory up to a threshold, then in a temp file
 * that is removed when the transaction ends. Written once while DATA streams in, with the
 * size limit enforced on the way; read any number of times afterwards.
 *
 * Fails with SPOOL_FULL (ENOSPC, EDQUOT) or SPOOL_FAILED (any other write error; both name the
 * folder, the cause keeps the errno),
 * MESSAGE_TOO_BIG (size limit), UPSTREAM_ABORTED (client gone mid-DATA), or the reason of
 * an aborted `signal`; a failed spool removes its file itself, a pending open included.
 */
import { createReadStream, promises as fsp } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { PostsealError, isPostsealError } from '../errors';
import { writeFully } from './write-fully';
import { isProcessAlive } from './process-alive';

export interface SpoolOptions {
  dir: string;
  memoryThresholdBytes: number;
  maxSizeBytes: number;
  /** Bytes kept in memory from the start, for parsing the header section. */
  headBytes?: number;
  /**
   * Stops the copy (source destroyed, file removed, rejecting with the signal's reason): a stage
   * that rewrites the message passes its own, so a rewrite outliving its timeout stops writing.
   */
  signal?: AbortSignal;
}

export interface Spool {
  readonly size: number;
  /** The first bytes of the message (at most headBytes), always in memory. */
  readonly head: Buffer;
  /**
   * The bytes from `start` to the end, in chunks; any number of times. An async iterable, not
   * a stream: a memory spool's one chunk needs no stream machinery (bench/README.md, profile).
   */
  openRaw(start?: number): AsyncIterable<Buffer>;
  dispose(): Promise<void>;
}

const DEFAULT_HEAD_BYTES = 1024 * 1024;
const SPOOL_FILE = /^postseal-(\d+)-[0-9a-f]{16}\.eml$/;

/**
 * Removes spool files whose process is gone (a postseal killed mid-message cannot clean up;
 * Postfix retries that message, so the file is of no use). Files of live processes stay.
 */
export async function sweepStaleSpools(dir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await fsp.readdir(dir).catch(() => [] as string[])) {
    const m = SPOOL_FILE.exec(name);
    if (!m || isProcessAlive(Number(m[1]))) continue;
    await fsp.rm(path.join(dir, name), { force: true });
    removed.push(name);
  }
  return removed;
}

export async function spoolFrom(source: Readable, opts: SpoolOptions): Promise<Spool> {
  const sink = new SpoolWriter(opts);
  const { signal } = opts;
  const onAbort = () => source.destroy(signal!.reason instanceof Error ? signal!.reason : new Error('spool aborted'));
  try {
    signal?.throwIfAborted();
    signal?.addEventListener('abort', onAbort, { once: true });
    await copy(source, sink);
    // Aborted after the last byte: the caller has given up on this spool all the same.
    signal?.throwIfAborted();
    if (sink.overflow) throw new PostsealError('MESSAGE_TOO_BIG', `message of ${sink.bytes} bytes exceeds ${opts.maxSizeBytes} bytes`);
  } catch (err) {
    await sink.discard();
    if (signal?.aborted) {
      // Aborted before the copy began: the source was never read, and is not to be.
      source.destroy();
      throw signal.reason;
    }
    if (isPostsealError(err)) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ECONNECTION') {
      throw new PostsealError('UPSTREAM_ABORTED', 'message data ended early', { cause: err });
    }
    // A full disk has its own reply (452 4.3.1): the postmaster's fix is space, not permissions.
    const full = code === 'ENOSPC' || code === 'EDQUOT';
    throw new PostsealError(full ? 'SPOOL_FULL' : 'SPOOL_FAILED', `cannot write the spool file in ${sink.dir}: ${(err as Error).message}`, { cause: err });
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  return sink.result();
}

/**
 * A message a stage rewrote (seven-bit, header-sanity), from its chunks: kept in memory as one
 * buffer when it ends within memoryThresholdBytes, as almost all mail does, without the stream
 * that spoolFrom sets up (28 of the 137 µs a 20 KB seven-bit rewrite took, bench/README.md);
 * else, from the chunk that passes the threshold, spoolFrom's file. The same limits: the
 * signal stops it (the source is closed, nothing is left behind) and maxSizeBytes is
 * MESSAGE_TOO_BIG.
 */
export async function spoolFromChunks(source: AsyncIterable<Buffer>, opts: SpoolOptions): Promise<Spool> {
  const it = source[Symbol.asyncIterator]();
  const held: Buffer[] = [];
  let size = 0;
  try {
    for (;;) {
      opts.signal?.throwIfAborted();
      const next = await it.next();
      if (next.done) break;
      held.push(next.value);
      size += next.value.length;
      if (size > opts.memoryThresholdBytes || size > opts.maxSizeBytes) {
        const rest = (async function* () {
          try {
            yield* held.splice(0);
            for (let n = await it.next(); !n.done; n = await it.next()) yield n.value;
          } finally {
            // spoolFrom destroys this on an error or abort: the source closes too (its file, its reads).
            await it.return?.();
          }
        })();
        return await spoolFrom(Readable.from(rest), opts);
      }
    }
  } catch (err) {
    await it.return?.();
    throw err;
  }
  opts.signal?.throwIfAborted();
  return memorySpool(held.length === 1 ? held[0] : Buffer.concat(held, size), opts.headBytes);
}

/**
 * source into sink with back-pressure, as stream.pipeline would, without the AbortController
 * that pipeline makes and aborts on every call (its DOMException, stack trace and all, made a
 * pass-through message cost about 10 % more CPU: bench/README.md, profile) and without the
 * async iterator and end-of-stream watcher that `for await` builds over a stream. An error on
 * either side, or a source that closes before its end, destroys the source, as pipeline does.
 */
function copy(source: Readable, sink: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (err?: Error | null) => {
      if (settled) return;
      settled = true;
      // The error handlers stay: either side can still report an error while it is torn down.
      source.off('data', onData).off('end', onEnd).off('close', onClose);
      if (!err) return resolve();
      source.destroy();
      reject(err);
    };
    const onData = (chunk: Buffer) => {
      if (sink.write(chunk)) return;
      source.pause();
      sink.once('drain', () => source.resume());
    };
    const onEnd = () => sink.end((err?: Error | null) => finish(err));
    const onClose = () => {
      if (!source.readableEnded) finish(new PostsealError('UPSTREAM_ABORTED', 'message data ended early'));
    };
    sink.on('error', finish);
    if (source.errored) return finish(source.errored);
    if (source.readableEnded) return onEnd();
    if (source.destroyed) return onClose();
    source.on('error', finish).on('close', onClose).on('end', onEnd).on('data', onData);
    // Flowing even if someone paused it before it was handed over.
    source.resume();
  });
}

/** A spool of bytes already in memory: messages that a stage rewrote, and tests. */
export function memorySpool(data: Buffer, headBytes = DEFAULT_HEAD_BYTES): Spool {
  return {
    size: data.length,
    head: data.subarray(0, headBytes),
    openRaw: (start = 0) => (start >= data.length ? chunks() : chunks(data.subarray(start))),
    dispose: async () => undefined,
  };
}

async function* chunks(...parts: Buffer[]): AsyncGenerator<Buffer> {
  yield* parts;
}

/**
 * Opened on the first read, closed when the reader stops, early or not: a reader that never
 * starts (a downstream that refused DATA) or breaks off leaves no descriptor open, which would
 * keep the deleted spool file's disk space.
 */
async function* fileChunks(filePath: string, start: number): AsyncGenerator<Buffer> {
  const stream = createReadStream(filePath, { start, highWaterMark: 256 * 1024 });
  try {
    for await (const chunk of stream) yield chunk as Buffer;
  } finally {
    stream.destroy();
    // An early stop destroys it with an AbortError, which once() would throw: wait for 'close' alone.
    if (!stream.closed) await new Promise<void>((resolve) => stream.once('close', () => resolve()));
  }
}

class SpoolWriter extends Writable {
  private chunks: Buffer[] = [];
  private size = 0;
  /** Set once the limit is passed: the rest is read and dropped, so the client hears 552 after its final dot. */
  overflow = false;
  private head: Buffer[] = [];
  private headSize = 0;
  /**
   * The spool file's open, kept from the moment it starts: a source that fails while it is
   * still pending leaves discard() a handle to close (a descriptor per failed message, held
   * until garbage collection, when it only looked at a handle already assigned).
   */
  private opening: Promise<fsp.FileHandle> | null = null;
  /** Set by discard(): writes still queued are dropped, and a pending open is closed, not written. */
  private discarded = false;
  private discarding: Promise<void> | null = null;
  private filePath = '';
  private readonly headLimit: number;
  readonly dir: string;

  constructor(private readonly opts: SpoolOptions) {
    super({ highWaterMark: 256 * 1024 });
    this.headLimit = opts.headBytes ?? DEFAULT_HEAD_BYTES;
    this.dir = opts.dir || tmpdir();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.size += chunk.length;
    if (this.overflow || this.discarded) return done();
    if (this.size > this.opts.maxSizeBytes) {
      this.overflow = true;
      this.discard().then(() => done(), done);
      return;
    }
    if (this.headSize < this.headLimit) {
      const part = chunk.subarray(0, this.headLimit - this.headSize);
      this.head.push(part);
      this.headSize += part.length;
    }
    if (!this.opening && this.size <= this.opts.memoryThresholdBytes) {
      this.chunks.push(chunk);
      done();
      return;
    }
    this.toFile(chunk).then(() => done(), done);
  }

  private async toFile(chunk: Buffer): Promise<void> {
    if (!this.opening) {
      this.filePath = path.join(this.dir, `postseal-${process.pid}-${randomBytes(8).toString('hex')}.eml`);
      this.opening = fsp.open(this.filePath, 'wx', 0o600);
    }
    const file = await this.opening;
    // discard() ran meanwhile: it closes this handle and removes the file.
    if (this.discarded) return;
    if (this.chunks.length) {
      const pending = Buffer.concat(this.chunks);
      this.chunks = [];
      await writeFully(file, pending);
    }
    // Whole or an error: a near-full disk writes part of a chunk without one (transaction/write-fully.ts).
    await writeFully(file, chunk);
  }

  get bytes(): number {
    return this.size;
  }

  override _final(done: (err?: Error | null) => void): void {
    if (!this.opening || this.discarded) return done();
    this.opening.then((file) => file.close()).then(() => done(), done);
  }

  /** Once, however often it is called (the size limit and a failing copy both call it). */
  discard(): Promise<void> {
    this.discarding ??= this.removeFile();
    return this.discarding;
  }

  private async removeFile(): Promise<void> {
    this.discarded = true;
    this.chunks = [];
    const file = await this.opening?.catch(() => null);
    await file?.close().catch(() => undefined);
    if (this.filePath) await fsp.rm(this.filePath, { force: true });
  }

  result(): Spool {
    // In memory the head is a view of the message, not a second copy of it.
    if (!this.filePath) return memorySpool(this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.size), this.headLimit);
    const head = Buffer.concat(this.head);
    const filePath = this.filePath;
    const size = this.size;
    return {
      size,
      head,
      openRaw: (start = 0) => (start >= size ? chunks() : fileChunks(filePath, start)),
      dispose: () => fsp.rm(filePath, { force: true }),
    };
  }
}
