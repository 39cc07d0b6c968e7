/**
 * Two-level streamed decompression, keeping nothing: a member (RFC 1951 raw deflate of a zip,
 * or RFC 1952 gzip) whose content is itself a gzip, inflated, and its output fed to a second
 * gunzip as it comes, whose output goes to the caller's reader. For a gzip inside a zip or a
 * gzip that is too big to hold (past-cap.ts): its file name is in the first bytes of the middle
 * level, its type and a tar's member headers in the inner one's.
 *
 * Caps, both levels counted: `maxBytes` of output of the two together (what is left of
 * maxTotalBytes); `maxRatio` (once `ratioFloorBytes` are out) of each level's output to its
 * input (a bomb inside a gzip is stopped as one in a zip would be). Backpressure is the
 * pipeline's: at most a few zlib chunks are in flight, whatever the sizes.
 *
 * Never throws for bad data: `corrupt` names which level zlib refused and its code; only the
 * caller's `signal` rejects (its reason).
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { slices } from './inflate';

export interface NestedOptions {
  readonly maxBytes: number;
  readonly maxRatio: number;
  readonly ratioFloorBytes: number;
  readonly signal: AbortSignal;
  /** Sees every chunk of the middle level (the inner gzip's own bytes). */
  readonly onMiddle: (chunk: Buffer) => void;
  /** Sees every chunk of the inner output; true stops, as complete. */
  readonly onInner: (chunk: Buffer) => boolean;
}

export interface NestedResult {
  /** Bytes out of each level (lower bounds when stopped early). */
  readonly middle: number;
  readonly inner: number;
  /** Whether both levels were decompressed to their end, or the reader had all it wanted. */
  readonly complete: boolean;
  readonly limit?: 'size' | 'ratio';
  readonly corrupt?: string;
}

class Stop extends Error {}

export async function inflateNested(format: 'raw' | 'gzip', input: Buffer, opts: NestedOptions): Promise<NestedResult> {
  opts.signal.throwIfAborted();
  let middle = 0;
  let inner = 0;
  let limit: NestedResult['limit'];
  let ended = false;
  let stopped = false;
  const over = (produced: number, from: number) => {
    if (middle + inner > opts.maxBytes) limit = 'size';
    else if (produced > opts.ratioFloorBytes && produced > opts.maxRatio * Math.max(1, from)) limit = 'ratio';
    if (limit) stopped = true;
    return limit !== undefined;
  };
  const stopper = new AbortController();
  const onAbort = () => stopper.abort(opts.signal.reason);
  opts.signal.addEventListener('abort', onAbort, { once: true });
  const outer = format === 'raw' ? zlib.createInflateRaw() : zlib.createGunzip();
  const gunzip = zlib.createGunzip();
  // Which level zlib refused: the pipeline reports the first error only.
  let failed: 'outer' | 'inner' | undefined;
  outer.once('error', () => void (failed ??= 'outer'));
  gunzip.once('error', () => void (failed ??= 'inner'));
  try {
    await pipeline(
      Readable.from(slices(input)),
      outer,
      async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          middle += chunk.length;
          if (over(middle, input.length)) throw new Stop();
          opts.onMiddle(chunk);
          yield chunk;
        }
      },
      gunzip,
      async (source: AsyncIterable<Buffer>) => {
        for await (const chunk of source) {
          inner += chunk.length;
          if (over(inner, middle)) throw new Stop();
          if (opts.onInner(chunk)) {
            ended = true;
            throw new Stop();
          }
        }
      },
      { signal: stopper.signal },
    );
    return { middle, inner, complete: true };
  } catch (err) {
    if (opts.signal.aborted) throw opts.signal.reason;
    if (ended) return { middle, inner, complete: true };
    if (stopped || err instanceof Stop) return { middle, inner, complete: false, limit };
    const code = (err as NodeJS.ErrnoException).code ?? 'Z_DATA_ERROR';
    return { middle, inner, complete: false, corrupt: `${failed === 'inner' ? 'inner gzip' : 'outer'}: ${code}` };
  } finally {
    opts.signal.removeEventListener('abort', onAbort);
    outer.destroy();
    gunzip.destroy();
  }
}
