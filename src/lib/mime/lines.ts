/**
 * Splits a byte stream into lines without holding them: each line is reported with its
 * offset, its length, its line ending, what kind of bytes it holds, and only its first
 * bytes (enough for a header field or a MIME boundary). A 50 MB line of binary costs the
 * same memory as a short one.
 */
import { isAscii } from 'node:buffer';

export interface Line {
  /** Offset of the line's first byte in the stream. */
  readonly start: number;
  /** Bytes of content, the line ending excluded. */
  readonly length: number;
  /** 2 for CRLF, 1 for a bare LF, 0 for a last line without one. */
  readonly eolLength: 0 | 1 | 2;
  /** The first bytes of the content, at most the reader's `keepBytes`. */
  readonly head: Buffer;
  /** A byte of 0x80 or more (RFC 2045 2.8). */
  readonly eightBit: boolean;
  readonly nul: boolean;
}

export class LineReader {
  private start = 0;
  private length = 0;
  private head: Buffer[] = [];
  private headLength = 0;
  private eightBit = false;
  private nul = false;
  private endsInCR = false;

  constructor(
    private readonly onLine: (line: Line) => void,
    private readonly keepBytes = 1000,
  ) {}

  push(chunk: Buffer): void {
    let pos = 0;
    for (let nl = chunk.indexOf(0x0a); nl >= 0; nl = chunk.indexOf(0x0a, pos)) {
      this.absorb(chunk.subarray(pos, nl));
      this.emit(this.endsInCR ? 2 : 1);
      pos = nl + 1;
    }
    this.absorb(chunk.subarray(pos));
  }

  end(): void {
    if (this.length > 0) this.emit(0);
  }

  private absorb(segment: Buffer): void {
    if (segment.length === 0) return;
    if (this.headLength < this.keepBytes) {
      const part = segment.subarray(0, this.keepBytes - this.headLength);
      this.head.push(part);
      this.headLength += part.length;
    }
    this.eightBit ||= !isAscii(segment);
    this.nul ||= segment.includes(0);
    this.length += segment.length;
    this.endsInCR = segment[segment.length - 1] === 0x0d;
  }

  private emit(eolLength: 0 | 1 | 2): void {
    // The CR of a CRLF was counted as content until the LF showed what it was.
    const length = eolLength === 2 ? this.length - 1 : this.length;
    const head = Buffer.concat(this.head).subarray(0, length);
    this.onLine({ start: this.start, length, eolLength, head, eightBit: this.eightBit, nul: this.nul });
    this.start += this.length + (eolLength === 0 ? 0 : 1);
    this.length = 0;
    this.head = [];
    this.headLength = 0;
    this.eightBit = false;
    this.nul = false;
    this.endsInCR = false;
  }
}
