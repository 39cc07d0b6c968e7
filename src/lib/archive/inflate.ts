/**
 * Bounded, streamed decompression (RFC 1951 raw deflate for zip members, RFC 1952 gzip): the
 * input goes to node:zlib in slices and the output is counted as it comes, so a zip bomb costs
 * what the limits allow and no more. The caller says how much of the output it keeps
 * (`keepBytes`: the head, for magic bytes, or all of it, to walk an inner archive) and the
 * caps: `maxBytes` of output, and `maxRatio` of output to input once `ratioFloorBytes` are out
 * (a bomb inflates a thousandfold; a large text file a few dozen times).
 *
 * Never throws for bad data: the result says `corrupt` (zlib refused the stream), `limit`
 * (which cap), or `truncated`; only the caller's `signal` rejects (its reason).
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';

export interface InflateOptions {
  /** Output bytes to keep; decompression stops once they are out unless `needAll`. */
  readonly keepBytes: number;
  /** Keep going after `keepBytes` to learn the full size (and check the caps). */
  readonly needAll: boolean;
  readonly maxBytes: number;
  readonly maxRatio: number;
  readonly ratioFloorBytes: number;
  readonly signal: AbortSignal;
  /** Sees every output chunk (a stream reader of what is not kept); true stops, as complete. */
  readonly onData?: (chunk: Buffer) => boolean;
}

export interface InflateResult {
  /** The first `keepBytes` of the output (all of it when it was kept whole). */
  readonly data: Buffer;
  /** Output bytes produced (a lower bound when stopped early). */
  readonly produced: number;
  /** Whether the whole stream was decompressed. */
  readonly complete: boolean;
  readonly limit?: 'size' | 'ratio';
  /** zlib's error code when the data is not a valid stream. */
  readonly corrupt?: string;
}

const SLICE = 64 * 1024;

/** The input in slices of 64 KiB, so that zlib's output is counted (and stopped) as it comes; inflate-nested.ts too. */
export function* slices(input: Buffer): Generator<Buffer> {
  for (let at = 0; at < input.length; at += SLICE) yield input.subarray(at, at + SLICE);
}

class Stop extends Error {}

export async function inflateBounded(format: 'raw' | 'gzip', input: Buffer, opts: InflateOptions): Promise<InflateResult> {
  opts.signal.throwIfAborted();
  const kept: Buffer[] = [];
  let keptBytes = 0;
  let produced = 0;
  let limit: InflateResult['limit'];
  // Set before the sink stops the pipeline: the error pipeline reports for it may be the
  // source's or zlib's premature close rather than Stop.
  let stopped = false;
  // The reader had all it wanted (onData): a whole result, as far as it is concerned.
  let ended = false;
  const stopper = new AbortController();
  const onAbort = () => stopper.abort(opts.signal.reason);
  opts.signal.addEventListener('abort', onAbort, { once: true });
  const inflater = format === 'raw' ? zlib.createInflateRaw() : zlib.createGunzip();
  try {
    await pipeline(
      Readable.from(slices(input)),
      inflater,
      async (source: AsyncIterable<Buffer>) => {
        for await (const chunk of source) {
          produced += chunk.length;
          if (keptBytes < opts.keepBytes) {
            const part = chunk.subarray(0, opts.keepBytes - keptBytes);
            kept.push(part);
            keptBytes += part.length;
          }
          if (opts.onData?.(chunk)) {
            ended = true;
            throw new Stop();
          }
          if (produced > opts.maxBytes) limit = 'size';
          else if (produced > opts.ratioFloorBytes && produced > opts.maxRatio * Math.max(1, input.length)) limit = 'ratio';
          if (limit || (!opts.needAll && keptBytes >= opts.keepBytes)) {
            stopped = true;
            throw new Stop();
          }
        }
      },
      { signal: stopper.signal },
    );
    return { data: Buffer.concat(kept), produced, complete: true };
  } catch (err) {
    if (opts.signal.aborted) throw opts.signal.reason;
    const data = Buffer.concat(kept);
    if (ended) return { data, produced, complete: true };
    if (stopped || err instanceof Stop) return { data, produced, complete: false, limit };
    const code = (err as NodeJS.ErrnoException).code ?? 'Z_DATA_ERROR';
    return { data, produced, complete: false, corrupt: code };
  } finally {
    opts.signal.removeEventListener('abort', onAbort);
    inflater.destroy();
  }
}
