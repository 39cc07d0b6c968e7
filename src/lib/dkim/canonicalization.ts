/**
 * Canonicalization for signing: DKIM "simple" and "relaxed" (RFC 6376 3.4) and legacy
 * DomainKeys "simple" and "nofws" (RFC 4870 3.4), header fields one at a time and the body
 * as a stream, so a message of any size is read once and never held in memory.
 *
 * The input is what the spool holds; the output is what a verifier computes from the bytes
 * the reinjection client sends, which makes every bare LF a CRLF and ends the last line with
 * a CRLF (reinject/smtp-client.ts DotStuffer). Both are applied here the same way.
 */

export type DkimCanonicalization = 'simple' | 'relaxed';
export type BodyCanonicalization = DkimCanonicalization | 'dk-simple' | 'dk-nofws';

const CRLF = Buffer.from('\r\n');
const SP = Buffer.from(' ');
const DOUBLE_SPACE = Buffer.from('  ');
/**
 * Canonical bytes are collected and handed to the sink in blocks: a hash update per line
 * costs more than the hashing. A block is made when the first byte needs it: one 64 KiB
 * block at start and another after the last flush made every message allocate 128 KiB,
 * and the garbage collection of that was 15 % of the originating path (bench/README.md).
 */
const BLOCK = 16 * 1024;
/** What relaxed body canonicalization changes: two spaces, a tab, space before CRLF, a CR or LF outside a CRLF. */
const NOT_RELAXED = / {2}|\t| \r\n|(?<!\r)\n|\r(?!\n)/;

/** One header field (name, colon, value, folding, line ending) as the signature hashes it; ends in CRLF. */
export function canonicalizeHeader(raw: Buffer, canon: DkimCanonicalization | 'dk-nofws'): Buffer {
  const text = raw.toString('latin1');
  if (canon === 'simple') return Buffer.from(`${text.replace(/\r?\n$/, '').replace(/\r?\n/g, '\r\n')}\r\n`, 'latin1');
  if (canon === 'dk-nofws') return Buffer.from(`${text.replace(/[ \t\r\n]/g, '')}\r\n`, 'latin1');
  const colon = text.indexOf(':');
  const name = text
    .slice(0, colon)
    .replace(/[ \t]+$/, '')
    .toLowerCase();
  const value = text
    .slice(colon + 1)
    .replace(/\r?\n/g, '')
    .replace(/[ \t]+/g, ' ')
    .replace(/^ | $/g, '');
  return Buffer.from(`${name}:${value}\r\n`, 'latin1');
}

/**
 * The body, canonicalized while it streams through: `update` with each chunk, then `end`.
 * Every canonical byte goes to `sink` (hash updates); `length` counts them, for l=.
 *
 * Empty lines are held back until a non-empty line follows, because all four methods drop
 * the empty lines at the end of the body. DomainKeys hashes the header/body separator as
 * part of the body (Mail::DKIM dk_simple), so its canonicalizers start with one held line.
 */
export class BodyCanonicalizer {
  length = 0;
  private heldEmptyLines: number;
  private lineHasContent = false;
  /** relaxed: white space seen in the current line and not yet written. */
  private heldSpace = false;
  /** A CR at the end of the last chunk: a line ending if the next chunk starts with LF. */
  private heldCR = false;
  private block: Buffer | null = null;
  private blockLength = 0;

  constructor(
    private readonly canon: BodyCanonicalization,
    private readonly sink: (bytes: Buffer) => void,
  ) {
    this.heldEmptyLines = canon.startsWith('dk-') ? 1 : 0;
  }

  update(chunk: Buffer): void {
    let pos = this.canon === 'relaxed' ? this.canonicalLines(chunk) : 0;
    if (this.heldCR) {
      this.heldCR = false;
      if (chunk[0] === 0x0a) {
        this.endLine();
        pos = 1;
      } else {
        this.content(Buffer.from('\r'));
      }
    }
    for (let nl = chunk.indexOf(0x0a, pos); nl >= 0; nl = chunk.indexOf(0x0a, pos)) {
      this.content(chunk.subarray(pos, nl > pos && chunk[nl - 1] === 0x0d ? nl - 1 : nl));
      this.endLine();
      pos = nl + 1;
    }
    if (pos < chunk.length) {
      const endsInCR = chunk[chunk.length - 1] === 0x0d;
      this.content(chunk.subarray(pos, endsInCR ? chunk.length - 1 : chunk.length));
      this.heldCR = endsInCR;
    }
  }

  /**
   * relaxed: the whole lines at the start of a chunk that are canonical as they are (most
   * mail, and all of it after the seven-bit stage) go out in one piece, not line by line;
   * returns where the rest of the chunk starts. Per-line work was about a sixth of the
   * originating stages' CPU (bench/README.md, profile).
   */
  private canonicalLines(chunk: Buffer): number {
    if (this.heldCR || this.lineHasContent || this.heldSpace) return 0;
    const whole = chunk.lastIndexOf(0x0a) + 1;
    if (whole === 0 || NOT_RELAXED.test(chunk.toString('latin1', 0, whole))) return 0;
    // Empty lines at the end are held as always: they count only if content follows.
    let end = whole;
    let trailing = 0;
    while (end >= 2 && (end === 2 || chunk[end - 3] === 0x0a)) {
      end -= 2;
      trailing++;
    }
    if (end > 0) this.write(chunk.subarray(0, end));
    this.lineHasContent = false;
    this.heldEmptyLines += trailing;
    return whole;
  }

  end(): void {
    if (this.heldCR) this.content(Buffer.from('\r'));
    this.heldCR = false;
    // The reinjection ends an unterminated last line with CRLF.
    if (this.lineHasContent) this.endLine();
    // RFC 6376 3.4.3: an empty body is a single CRLF in "simple", nothing in "relaxed".
    if (this.canon === 'simple' && this.length === 0) this.emit(CRLF);
    this.flush();
  }

  private content(segment: Buffer): void {
    if (segment.length === 0) return;
    switch (this.canon) {
      case 'simple':
      case 'dk-simple':
        return this.write(segment);
      case 'dk-nofws':
        return this.write(segment.toString('latin1').replace(/[ \t\r]/g, ''));
      case 'relaxed': {
        // Most text has single spaces and no tabs or trailing space: it is canonical already.
        const plain = segment.indexOf(0x09) < 0 && segment.indexOf(DOUBLE_SPACE) < 0 && segment[segment.length - 1] !== 0x20;
        if (plain && !(this.heldSpace && segment[0] === 0x20)) {
          if (this.heldSpace) this.write(SP);
          this.heldSpace = false;
          return this.write(segment);
        }
        const text = segment.toString('latin1').replace(/[ \t]+/g, ' ');
        const leading = text.startsWith(' ');
        const trailing = text.endsWith(' ') && text.length > (leading ? 1 : 0);
        const core = text.slice(leading ? 1 : 0, trailing ? -1 : undefined);
        if (core.length === 0) {
          this.heldSpace ||= leading || trailing;
          return;
        }
        if (this.heldSpace || leading) {
          this.heldSpace = false;
          this.write(SP);
        }
        this.write(core);
        this.heldSpace = trailing;
      }
    }
  }

  /** Non-empty content: the empty lines held before it are real, write them first. */
  private write(bytes: Buffer | string): void {
    if (bytes.length === 0) return;
    for (; this.heldEmptyLines > 0; this.heldEmptyLines--) this.emit(CRLF);
    this.lineHasContent = true;
    this.emit(bytes);
  }

  private endLine(): void {
    if (this.lineHasContent) this.emit(CRLF);
    else this.heldEmptyLines++;
    this.lineHasContent = false;
    this.heldSpace = false;
  }

  /** Strings hold bytes as latin1 characters. */
  private emit(bytes: Buffer | string): void {
    this.length += bytes.length;
    if (this.blockLength + bytes.length > BLOCK) this.flush();
    if (bytes.length > BLOCK) return this.sink(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
    this.block ??= Buffer.allocUnsafe(BLOCK);
    this.blockLength += typeof bytes === 'string' ? this.block.write(bytes, this.blockLength, 'latin1') : bytes.copy(this.block, this.blockLength);
  }

  private flush(): void {
    if (this.blockLength === 0 || !this.block) return;
    this.sink(this.block.subarray(0, this.blockLength));
    // The sink may keep what it was given (a test collecting output), so the next block is new.
    this.block = null;
    this.blockLength = 0;
  }
}
