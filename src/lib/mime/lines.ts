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
 *
 * Lines end at LF only, as RFC 5322 has them; but Thunderbird also ends one at a bare CR, so
 * what follows each bare CR + "--" is reported with the line or run that holds it (CrDashes),
 * for the MIME walker to see a delimiter that only such a reader sees.
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
  /** What follows a bare CR + "--" in the line (CrDashes). */
  readonly crDashes: CrDashes;
}

/**
 * The text after each bare CR + "--" (to the next CR or LF, at most 200 bytes), reported with
 * the bytes in which it ends: Thunderbird ends a line at a bare CR, so to it this may be a
 * boundary delimiter, which to RFC 2046 (and to this reader) is inside a line.
 */
export type CrDashes = readonly string[];

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
  readonly crDashes: CrDashes;
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
const CR_DASHES = Buffer.from('\r--');
const NO_CR_DASHES: CrDashes = [];
const CR_TEXT = 200;

/** Where the text after a bare CR + "--" at `from` ends: a CR, an LF, CR_TEXT bytes or `buf`'s end. */
function crTextEnd(buf: Buffer, from: number, room: number): number {
  let end = from;
  const limit = Math.min(buf.length, from + room);
  while (end < limit && buf[end] !== 0x0d && buf[end] !== 0x0a) end++;
  return end;
}

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
  /** The last two bytes of the current line read so far (-1: none), and its bare CR + "--" texts. */
  private last1 = -1;
  private last2 = -1;
  private crDashes: string[] = [];
  /** The text after a bare CR + "--" whose end is not read yet. */
  private pending: string | null = null;

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
    if (this.inRun) this.sink.plain({ eightBit: false, nul: false, longLine: this.length > MAX_LINE_OCTETS, eolLength: 0, crDashes: NO_CR_DASHES });
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
    this.findCrDashes(segment, this.crDashes);
    this.length += segment.length;
    this.endsInCR = segment[segment.length - 1] === 0x0d;
  }

  private emit(eolLength: 0 | 1 | 2): void {
    const length = eolLength === 2 ? this.length - 1 : this.length;
    const head = Buffer.concat(this.head).subarray(0, length);
    this.endCrText(this.crDashes);
    this.sink.line({ start: this.start, length, eolLength, head, eightBit: this.eightBit, nul: this.nul, crDashes: this.crDashes.length ? this.crDashes : NO_CR_DASHES });
    if (this.crDashes.length) this.crDashes = [];
    this.last1 = this.last2 = -1;
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
    const crDashes: string[] = [];
    if (this.length === 0) this.last1 = this.last2 = -1;
    this.findCrDashes(bytes, crDashes);
    this.sink.plain({ eightBit: !isAscii(bytes), nul: bytes.includes(0), longLine, eolLength, crDashes: crDashes.length ? crDashes : NO_CR_DASHES });
    this.length = bytes.length - lineStart;
    if (this.length === 0) this.last1 = this.last2 = -1;
    if (this.length > 0) this.endsInCR = bytes[bytes.length - 1] === 0x0d;
    else {
      this.endsInCR = false;
      this.inRun = false;
    }
    return stop;
  }

  /**
   * Adds to `out` the text after each bare CR + "--" that ends in `bytes` (which go on the line
   * whose last two bytes were last1 and last2, so one split across chunks is found too); one
   * that runs to the end of `bytes` waits in `pending` for the next bytes of its line.
   */
  private findCrDashes(bytes: Buffer, out: string[]): void {
    if (bytes.length === 0) return;
    let from = 0;
    if (this.pending !== null) {
      const end = crTextEnd(bytes, 0, CR_TEXT - this.pending.length);
      this.pending += bytes.toString('latin1', 0, end);
      if (end === bytes.length && this.pending.length < CR_TEXT) return;
      out.push(this.pending);
      this.pending = null;
      from = end;
    } else if (this.last2 === 0x0d && bytes[0] === 0x2d && bytes[1] === 0x2d) this.takeCrText(bytes, 2, out);
    else if (this.last1 === 0x0d && this.last2 === 0x2d && bytes[0] === 0x2d) this.takeCrText(bytes, 1, out);
    for (let at = bytes.indexOf(CR_DASHES, from); at >= 0 && this.pending === null; at = bytes.indexOf(CR_DASHES, at + 3)) this.takeCrText(bytes, at + 3, out);
    this.last1 = bytes.length >= 2 ? bytes[bytes.length - 2] : this.last2;
    this.last2 = bytes[bytes.length - 1];
  }

  private takeCrText(bytes: Buffer, from: number, out: string[]): void {
    const end = crTextEnd(bytes, from, CR_TEXT);
    const text = bytes.toString('latin1', from, end);
    if (end === bytes.length && text.length < CR_TEXT) this.pending = text;
    else out.push(text);
  }

  /** The line ended: a text still waiting for its end ends here. */
  private endCrText(out: string[]): void {
    if (this.pending === null) return;
    out.push(this.pending);
    this.pending = null;
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
