/**
 * Milter framing (protocol.ts): cuts a byte stream into packets of a 4-byte big-endian length
 * (the command byte included) and the command's data. A length of 0 or above `maxPacketBytes`
 * is a MilterProtocolError: a peer that is not an MTA speaking milter (an HTTP client on the
 * port) or one that would make us buffer without limit.
 */
import { MilterProtocolError } from './protocol';

export interface Frame {
  readonly code: number;
  readonly data: Buffer;
}

export class FrameReader {
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(private readonly maxPacketBytes: number) {}

  /** The whole packets completed by `chunk`, in order; a partial one waits for more. */
  push(chunk: Buffer): Frame[] {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    const frames: Frame[] = [];
    let buf = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending, this.pendingBytes);
    let pos = 0;
    while (buf.length - pos >= 4) {
      const len = buf.readUInt32BE(pos);
      if (len === 0) throw new MilterProtocolError('packet of length 0');
      if (len > this.maxPacketBytes) throw new MilterProtocolError(`packet of ${len} bytes, more than ${this.maxPacketBytes}`);
      if (buf.length - pos - 4 < len) break;
      frames.push({ code: buf[pos + 4], data: buf.subarray(pos + 5, pos + 4 + len) });
      pos += 4 + len;
    }
    buf = buf.subarray(pos);
    this.pending = buf.length ? [buf] : [];
    this.pendingBytes = buf.length;
    return frames;
  }

  /** Bytes received that do not make a whole packet yet. */
  get buffered(): number {
    return this.pendingBytes;
  }
}
