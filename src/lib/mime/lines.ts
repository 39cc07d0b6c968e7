/**
 * Splits a byte stream into lines without holding them: each line is reported with its
 * offset, its length, its line ending, what kind of bytes it holds, and only its first
 * bytes (enough for a header field or a MIME boundary). A 50 MB line of binary costs the
 * same memory as a short one.
 *
 * Almost every line of a message is a body line that only adds to what its part holds. While
 * the sink asks for it (in a body), lines that cannot be a boundary delimiter, those not
 * starting with "--", come as runs instead: which bytes the run holds, whether a line in it
 * is over 998 octets, how its last line ended. A run costs a few native scans where a Line
 * per line cost an object and a call chain each (bench/README.md, the seven-bit profile).
 */
import { isAscii } from 'node:buffer';

/** RFC 5322 2.1.1: at most 998 octets on a line, the CRLF excluded. */
export const MAX_LINE_OCTETS = 998;

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

/** Consecutive lines none of which starts with "--"; the first and last may go on in other runs. */
export interface PlainRun {
  /** A byte of 0x80 or more anywhere in the run. */
  readonly eightBit: boolean;
  /** A NUL anywhere in the run. */
  readonly nul: boolean;
  /** A line that ended in the run (or, at the end of the stream, the last line) has over MAX_LINE_OCTETS. */
  readonly longLine: boolean;
  /** The line ending of the last line that ended in the run; 0 when none did. */
  readonly eolLength: 0 | 1 | 2;
}

export interface LineSink {
  line(line: Line): void;
  /**
   * Asked at line starts: may lines that do not start with "--" come in runs? The answer must
   * hold until the next `line`, as the lines of a run are not asked about one by one.
   */
  takesPlainRuns(): boolean;
  plain(run: PlainRun): void;
}

const NEWLINE_DASHES = Buffer.from('\n--');

export class LineReader {
  /** Offset in the stream of the chunk being read, and of the current line. */
  private chunkStart = 0;
  private start = 0;
  /** Bytes of the current line so far; a CR at its end is counted until the LF shows what it is. */
  private length = 0;
  private endsInCR = false;
  /** The current line belongs to a plain run, so nothing but its length is kept. */
  private inRun = false;
  private head: Buffer[] = [];
  private headLength = 0;
  private eightBit = false;
  private nul = false;

  constructor(
    private readonly sink: LineSink,
    private readonly keepBytes = 1000,
  ) {}

  push(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      if (this.length === 0 && !this.inRun) {
        this.start = this.chunkStart + pos;
        this.inRun = this.sink.takesPlainRuns() && !mayBeDelimiter(chunk, pos);
      }
      pos = this.inRun ? this.readRun(chunk, pos) : this.readLine(chunk, pos);
    }
    this.chunkStart += chunk.length;
  }

  end(): void {
    if (this.length === 0) return;
    if (this.inRun) this.sink.plain({ eightBit: false, nul: false, longLine: this.length > MAX_LINE_OCTETS, eolLength: 0 });
    else this.emit(0);
  }

  /** Reads the current line up to its end or the chunk's, whichever comes first. */
  private readLine(chunk: Buffer, pos: number): number {
    const nl = chunk.indexOf(0x0a, pos);
    if (nl < 0) {
      this.absorb(chunk.subarray(pos));
      return chunk.length;
    }
    this.absorb(chunk.subarray(pos, nl));
    this.emit(this.endsInCR ? 2 : 1);
    return nl + 1;
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
    const length = eolLength === 2 ? this.length - 1 : this.length;
    const head = Buffer.concat(this.head).subarray(0, length);
    this.sink.line({ start: this.start, length, eolLength, head, eightBit: this.eightBit, nul: this.nul });
    this.length = 0;
    this.head = [];
    this.headLength = 0;
    this.eightBit = false;
    this.nul = false;
    this.endsInCR = false;
  }

  /** Reads plain lines up to the next line that may start with "--" or the chunk's end. */
  private readRun(chunk: Buffer, pos: number): number {
    const stop = nextMaybeDelimiter(chunk, pos);
    const bytes = chunk.subarray(pos, stop);
    // Offsets from here are into `bytes`; a line that began in an earlier chunk starts before 0.
    let lineStart = -this.length;
    let longLine = false;
    for (let nl = bytes.indexOf(0x0a); nl >= 0; nl = bytes.indexOf(0x0a, lineStart)) {
      longLine ||= nl - lineStart - (this.crBefore(bytes, nl) ? 1 : 0) > MAX_LINE_OCTETS;
      lineStart = nl + 1;
      // Every line that ends within MAX_LINE_OCTETS of here is short: go past the last of them.
      const last = bytes.lastIndexOf(0x0a, lineStart + MAX_LINE_OCTETS);
      if (last >= lineStart) lineStart = last + 1;
    }
    const lastNl = lineStart > 0 ? lineStart - 1 : -1;
    const eolLength = lastNl < 0 ? 0 : this.crBefore(bytes, lastNl) ? 2 : 1;
    this.sink.plain({ eightBit: !isAscii(bytes), nul: bytes.includes(0), longLine, eolLength });
    this.length = bytes.length - lineStart;
    if (this.length > 0) this.endsInCR = bytes[bytes.length - 1] === 0x0d;
    else {
      this.endsInCR = false;
      this.inRun = false;
    }
    return stop;
  }

  /** Whether the LF at `nl` ends a CRLF, the CR perhaps at the end of the previous chunk. */
  private crBefore(bytes: Buffer, nl: number): boolean {
    return nl > 0 ? bytes[nl - 1] === 0x0d : this.endsInCR;
  }
}

/** A line starting at `pos` begins with "--", or may: only "-" of it is in this chunk. */
function mayBeDelimiter(chunk: Buffer, pos: number): boolean {
  return chunk[pos] === 0x2d && (pos + 1 === chunk.length || chunk[pos + 1] === 0x2d);
}

/** Where the first line after `pos` that may begin with "--" starts, or the chunk's end. */
function nextMaybeDelimiter(chunk: Buffer, pos: number): number {
  const at = chunk.indexOf(NEWLINE_DASHES, pos);
  if (at >= 0) return at + 1;
  const n = chunk.length;
  return n - 2 >= pos && chunk[n - 2] === 0x0a && chunk[n - 1] === 0x2d ? n - 1 : n;
}
