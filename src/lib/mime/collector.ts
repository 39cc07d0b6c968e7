/**
 * The bytes of one MIME leaf, decoded, kept as far as a check needs them (lib/mime/parts.ts
 * feeds it the leaf's body range): the head (HEAD_BYTES) for the type; all of it, up to
 * `maxBytes`, when the head shows an archive (one unar reads, too, when it is on), when the name or declared type says archive
 * (a zip with bytes in front still opens, archive/expand.ts), when the part is a message that
 * was encoded (walked by parts.ts), or when the caller asks (`keepAll`, the second read of a
 * part whose end showed a zip end record); and the last bytes, where a zip's end record is.
 * Text is scanned for uuencoded files ("begin 644 name", what amavisd decodes, uuencode.ts):
 * each is a member of the part, with its name and type, walked into when an archive.
 */
import { declaresArchive, newNode, type ContentNode } from '../archive/expand';
import { archiveKind, detectType, HEAD_BYTES } from '../archive/magic';
import { hasZipEnd } from '../archive/zip';
import { decoderFor, type Decoder } from './decoders';
import { UuScanner } from './uuencode';

/** A zip's end record is in its last 64 KiB + 22 bytes. */
const TAIL_BYTES = 0xffff + 22;

/** Characters kept of a text line not ended yet: more than a begin line with a 1024-character name. */
const LINE_HEAD = 4096;

export type Outcome = 'done' | 'read-again' | { message: Buffer };

export class Collector {
  private readonly decoder: Decoder;
  private readonly kept: Buffer[] = [];
  private bytes = 0;
  private whole: boolean | null;
  private tooBig = false;
  private tail: Buffer = Buffer.alloc(0);
  private line = '';
  private readonly encodedMessage: boolean;
  /** Files uuencoded in the text (uuencode.ts), each a member of the part. */
  readonly uu: UuScanner;

  constructor(
    private readonly node: ContentNode,
    transferEncoding: string,
    private readonly maxBytes: number,
    keepAll = false,
    /** Whether an external unpacker walks into the part (archive/external.ts walksInto, by its types or a .rar name): it is kept whole too. */
    private readonly unpackerWalks: (node: ContentNode) => boolean = () => false,
  ) {
    this.decoder = decoderFor(transferEncoding);
    this.encodedMessage = node.declaredTypes[0] === 'message/rfc822' && !['7bit', '8bit', 'binary'].includes(transferEncoding);
    this.whole = keepAll || this.encodedMessage || declaresArchive(node) ? true : null;
    this.uu = new UuScanner(maxBytes, (f) => {
      const file = { ...newNode('', [f.name], []), types: f.types };
      return archiveKind(f.types) !== null || declaresArchive(file) || unpackerWalks(file);
    });
  }

  push(encoded: Buffer): void {
    if (this.tooBig) return;
    this.keep(this.decoder.push(encoded));
  }

  private keep(data: Buffer): void {
    if (data.length === 0 || this.tooBig) return;
    if (this.whole !== false) {
      this.kept.push(data);
      this.bytes += data.length;
      if (this.whole === null && this.bytes >= HEAD_BYTES) this.decide();
      if (this.whole && this.bytes > this.maxBytes) {
        this.tooBig = true;
        this.kept.length = 0;
      }
      return;
    }
    this.scanText(data);
    this.tail = this.tail.length + data.length <= TAIL_BYTES ? Buffer.concat([this.tail, data]) : Buffer.concat([this.tail, data]).subarray(-TAIL_BYTES);
  }

  private decide(): void {
    const all = Buffer.concat(this.kept);
    this.node.types = detectType(all.subarray(0, HEAD_BYTES));
    this.whole = archiveKind(this.node.types) !== null || this.unpackerWalks(this.node);
    if (this.whole) return;
    this.kept.length = 0;
    this.bytes = 0;
    this.keep(all);
  }

  /**
   * Complete lines of text to the uuencode scanner: text by its bytes, or any text/plain part
   * (the type of a message without MIME), whatever its first bytes: Thunderbird looks for
   * "begin" lines in a body that starts like HTML, BinHex or a PDF, or holds a control character.
   */
  private scanText(data: Buffer): void {
    if (!this.node.types.includes('txt') && this.node.declaredTypes[0] !== 'text/plain') return;
    // A bare CR ends a line too, as in Thunderbird's line reader (one at the very end waits for
    // the next bytes, which may start with its LF).
    const text = (this.line + data.toString('latin1')).replace(/\r(?!\n|$)/g, '\n');
    const cut = text.lastIndexOf('\n');
    // An unfinished line keeps its head, where "begin 644" is; a longer one loses its middle,
    // not its start (the name's extension, at the end, comes with the rest of the line).
    const partial = cut < 0 ? text : text.slice(cut + 1);
    this.line = partial.length > LINE_HEAD ? partial.slice(0, LINE_HEAD) : partial;
    if (cut >= 0) this.uu.feed(text.slice(0, cut));
  }

  /** Whether the part is being kept whole (the caller reserves memory for it). */
  get keepingWhole(): boolean {
    return (this.whole === true && !this.tooBig) || this.uu.keepingWhole;
  }

  /** Bytes held whole now (the part, or the files uuencoded in it), for the caller's reservation. */
  get heldBytes(): number {
    return this.whole === true && !this.tooBig ? this.bytes : this.uu.heldBytes;
  }

  /** Stops keeping the part (or the uuencoded file in it): the process-wide budget had no room (memory.ts). */
  drop(): void {
    if (this.whole !== true) return this.uu.drop();
    this.tooBig = true;
    this.kept.length = 0;
    this.node.limit = 'busy';
  }

  /** What the part needs next: nothing, a second read kept whole, or its message walked. */
  finish(): Outcome {
    if (!this.tooBig) this.keep(this.decoder.end());
    if (this.whole === null) this.decide();
    if (this.whole === false) {
      this.scanText(Buffer.from('\n'));
      this.uu.end();
      // Bytes that end like a zip open in unzip whatever their start: read again, whole.
      return hasZipEnd(this.tail) ? 'read-again' : 'done';
    }
    if (this.tooBig) {
      this.node.limit ??= 'size';
      return 'done';
    }
    const data = Buffer.concat(this.kept);
    this.kept.length = 0;
    if (this.node.types.length === 0) this.node.types = detectType(data.subarray(0, HEAD_BYTES));
    if (this.encodedMessage) return { message: data };
    this.data = data;
    return 'done';
  }

  /** The whole part after `finish`, when it was kept whole (an archive or declared one). */
  data: Buffer | null = null;
}
