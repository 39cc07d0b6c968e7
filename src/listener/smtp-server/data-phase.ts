/**
 * smtp-server's DATA-phase parser (SMTPStream#_feedDataStream), replaced by one with the same
 * observable behaviour that costs less CPU.
 *
 * Why: smtp-server (3.21.6, pinned exactly in package.json) looks at every byte of the message
 * in a JavaScript loop, copies every chunk to put the bytes held back from the previous one in
 * front of it, and after each dot-stuffed line stops and resumes in a setImmediate. A CPU profile
 * of postseal forwarding 200 KB messages put that function at about 21 % of the CPU. Here
 * line-start dots are found with Buffer#indexOf, the held-back bytes are read where they lie,
 * and escape dots are removed in one pass over the chunk.
 *
 * Kept exactly as in the library (test/listener/data-phase.test.ts runs both on the same input
 * cut into chunks at random and compares what they do), RFC 5321 §4.1.1.4 and §4.5.2:
 * - DATA ends at CR LF "." CR LF, which may straddle chunks; at data start ".\r\n" alone ends it,
 *   but only while `_atDataStart` holds: once a leading escape dot was stripped, a "." at a chunk
 *   edge is content, or TCP segmentation could end DATA early and smuggle in commands.
 * - A dot after any LF (a bare LF too) followed by a dot is an escape and is dropped; "\n.\r\n"
 *   after a bare LF is content. Like the library, the second byte of the data is never taken as
 *   a line start.
 * - The last four bytes of every chunk are held back, every emitted byte goes through
 *   `_countDataBytes` (byteLength and the size limit move as before), bytes are written only while
 *   the data stream is writable, and `_endDataMode` gets the bytes after the terminator
 *   (pipelined commands).
 * - Back-pressure: if the data stream asked for it, the next chunk is not taken before 'drain'
 *   (or 'close', as a destroyed stream never drains).
 * Different: the pieces between escape dots are written in one turn of the event loop, not one
 * turn each; a chunk is at most what the socket delivered, so the buffering stays as bounded.
 *
 * Refuses to install (./index.ts checks the version first) if smtp-server lacks the members used
 * here: this replaces a private method, so a new version must be read again before it is let in.
 * Remove when smtp-server's own parser costs about as little (bench --profile tells).
 */
import { SMTPStream } from 'smtp-server/lib/smtp-stream';
import type { SMTPServerDataStream } from 'smtp-server';

type Done = (err?: Error | null) => void;

/** What the library holds back at each chunk end; the same, so byteLength moves in the same steps. */
const HELD_BACK_BYTES = 4;
const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const LF_DOT = Buffer.from('\n.');
const NOTHING = Buffer.alloc(0);

/** The bytes held back from the last chunk followed by the new chunk, addressed as one without copying. */
class Joined {
  readonly length: number;

  constructor(
    private readonly head: Buffer,
    private readonly chunk: Buffer,
  ) {
    this.length = head.length + chunk.length;
  }

  at(k: number): number {
    return k < this.head.length ? this.head[k] : this.chunk[k - this.head.length];
  }

  /** Views of [from, to): two when the range starts in the held-back bytes and goes on into the chunk. */
  parts(from: number, to: number): Buffer[] {
    const h = this.head.length;
    if (from >= h) return [this.chunk.subarray(from - h, to - h)];
    if (to <= h) return [this.head.subarray(from, to)];
    return [this.head.subarray(from), this.chunk.subarray(0, to - h)];
  }

  /** [from, to) as one buffer: a view, or a copy when it spans both (never more than a few bytes in practice). */
  one(from: number, to: number): Buffer {
    const parts = this.parts(from, to);
    return parts.length === 1 ? parts[0] : Buffer.concat(parts);
  }

  /**
   * The next dot right after an LF, at `from` or later, with the two bytes after it present (the
   * library decides nothing before it can see them; the chunk end holds them back), or -1.
   */
  nextLineDot(from: number): number {
    const last = this.length - 3;
    const h = this.head.length;
    for (let p = from; p <= Math.min(h, last); p++) if (this.at(p - 1) === LF && this.at(p) === DOT) return p;
    const j = this.chunk.indexOf(LF_DOT, Math.max(from, h + 1) - 1 - h);
    return j !== -1 && h + j + 1 <= last ? h + j + 1 : -1;
  }
}

export function feedDataStream(this: SMTPStream, chunk: Buffer, done: Done): void {
  const stream = dataStreamOf(this);
  const data = new Joined(this._lastBytes || NOTHING, chunk);
  this._lastBytes = false;
  // The first byte neither emitted nor dropped.
  let start = 0;
  if (this._atDataStart) {
    if (data.length >= 3 && data.at(0) === DOT && data.at(1) === CR && data.at(2) === LF) {
      this._endDataMode(false, data.one(3, data.length), done);
      return;
    }
    if (data.length >= 2 && data.at(0) === DOT && data.at(1) === DOT) {
      // The escape dot is consumed payload: from now on a leading "." is content.
      start = 1;
      this._atDataStart = false;
    }
  }
  for (let p = data.nextLineDot(2); p !== -1; p = data.nextLineDot(p + 1)) {
    if (data.at(p - 2) === CR && data.at(p + 1) === CR && data.at(p + 2) === LF) {
      // Everything before the dot is content, the CR LF that ends the last line included.
      this._countDataBytes(p - start);
      const parts = data.parts(start, p);
      const last = parts.pop() as Buffer;
      write(stream, parts);
      this._endDataMode(last, data.one(p + 3, data.length), done);
      return;
    }
    if (data.at(p + 1) === DOT) {
      emit(this, stream, data, start, p);
      start = p + 1;
    }
  }
  const held = Math.min(HELD_BACK_BYTES, data.length - start);
  emit(this, stream, data, start, data.length - held);
  // A copy, so that four bytes do not keep the whole chunk alive until the next one.
  this._lastBytes = held > 0 && Buffer.concat(data.parts(data.length - held, data.length));
  afterBackPressure(stream, done);
}

function dataStreamOf(parser: SMTPStream): SMTPServerDataStream {
  if (!parser._dataStream) throw new Error('smtp-server fed DATA input outside data mode');
  return parser._dataStream;
}

function emit(parser: SMTPStream, stream: SMTPServerDataStream, data: Joined, from: number, to: number): void {
  if (to <= from) return;
  parser._countDataBytes(to - from);
  write(stream, data.parts(from, to));
}

function write(stream: SMTPServerDataStream, parts: Buffer[]): void {
  for (const part of parts) if (stream.writable) stream.write(part);
}

/** Takes the next chunk now, or once a full data stream has drained (or closed: destroyed ones never drain). */
function afterBackPressure(stream: SMTPServerDataStream, done: Done): void {
  if (!stream.writable || !stream.writableNeedDrain) return done();
  const resume = (): void => {
    stream.removeListener('drain', resume);
    stream.removeListener('close', resume);
    done();
  };
  stream.on('drain', resume);
  stream.on('close', resume);
}

function assertReviewedShape(): void {
  const proto = SMTPStream.prototype;
  const probe = new SMTPStream();
  const missing = [
    ...(['_feedDataStream', '_countDataBytes', '_endDataMode'] as const).filter((m) => typeof proto[m] !== 'function').map((m) => `method ${m}`),
    ...(['_lastBytes', '_atDataStart', '_dataStream'] as const).filter((f) => !(f in probe)).map((f) => `field ${f}`),
  ];
  if (missing.length > 0) {
    throw new Error(`smtp-server differs from what src/listener/smtp-server/data-phase.ts was reviewed against; missing ${missing.join(', ')}`);
  }
}

/** Called once by ./index.ts, after the version gate. */
export function installDataPhase(): void {
  assertReviewedShape();
  SMTPStream.prototype._feedDataStream = feedDataStream;
}
