/**
 * Files uuencoded in text ("begin 644 name" ... "end", and `uuencode -m`'s "begin-base64"
 * ... "===="), what mail readers such as Outlook and Thunderbird show as attachments and
 * amavisd-new decodes; and the two other encodings Thunderbird decodes in such text: yEnc
 * ("=ybegin line=128 size=N name=x" ... "=yend size=N") and BinHex 4.0 (from its "(This file
 * must be converted with BinHex 4.0)" line to the first line not 64 characters long, kept as
 * text, type `hqx`, for unar to read its name and bytes). Each is a file of its own, with its name, the first HEAD_BYTES of its
 * bytes for its type and, when those show an archive, all of it (within `maxBytes`) to walk
 * into. Fed the text line by line (collector.ts); decoding stops at a file's head unless it is
 * kept whole, so a long uuencoded file costs its lines' scan, not their decoding.
 *
 * Lenient as Thunderbird is (mailnews/mime mimeunty.cpp, mimeenc.cpp), not strict as uudecode:
 * a line shorter than its length character says is padded with zero bytes (a gateway stripped
 * the spaces an old encoder wrote for them), blank lines are skipped, and a file ends at "end",
 * at a line starting with white space or "END" in any case, at another "begin" line, or where
 * the text does; what was decoded is kept. Stricter, a reader that stopped at the first odd line
 * would miss a program Thunderbird decodes whole. At most MAX_FILES files per part; their
 * names are checked whatever their bytes.
 */
import { detectType, HEAD_BYTES, type ShortTypes } from '../archive/magic';

const BEGIN = /^begin(-base64)? +[0-7]{3,4} +(.+?)\s*$/;
const YBEGIN = /^=ybegin line=\d* size=\d* name=(.+?)\s*$/;
const BINHEX = '(This file must be converted with BinHex';
type Mode = 'uu' | 'base64' | 'yenc' | 'hqx';
/** Files read per part at most. */
export const MAX_FILES = 100;

export interface UuFile {
  readonly name: string;
  types: ShortTypes;
  /** The decoded head, then (kept whole) the rest; empty once known not to be kept. */
  readonly chunks: Buffer[];
  bytes: number;
  /** Being kept whole (an archive), until `maxBytes` is passed (`tooBig`). */
  whole: boolean;
  tooBig: boolean;
  /**
   * Too big only because the part's files decode to more than the text they came from: lines
   * cut short, padded (45 bytes from "M"), which no encoder writes. Evasion (a few KB of text
   * that fills `maxBytes`), not a large file: a `ratio` limit, not `size`.
   */
  padded?: boolean;
  /** No memory to keep it whole (the process-wide budget was full). */
  busy: boolean;
  decided: boolean;
}

export class UuScanner {
  /** A file began after MAX_FILES were read: the part holds files that were not checked. */
  overflow = false;
  readonly files: UuFile[] = [];
  private current: UuFile | null = null;
  private mode: Mode = 'uu';
  /**
   * Bytes of every file kept whole so far, which stay in memory until the part is walked: held
   * to `maxBytes` together, the one reservation the caller makes for the part (parts.ts), not
   * `maxBytes` each.
   */
  private keptBytes = 0;
  /** The budget had no room for this part: later archives are not kept either (busy), nor waited for again. */
  private noRoom = false;
  /** Characters of text fed so far: files decode to less unless their lines were padded. */
  private textBytes = 0;

  /** `keepWhole`: whether a file of these types is walked into (an archive). */
  constructor(
    private readonly maxBytes: number,
    private readonly keepWhole: (file: UuFile) => boolean,
  ) {}

  /**
   * Complete lines of text (no partial last line). Outside a file only "begin", "=ybegin" and
   * BinHex's line at a line's start are looked for (indexOf, each hit remembered until passed,
   * not a walk of every line).
   */
  feed(block: string): void {
    const base = this.textBytes;
    try {
      this.scan(block, base);
    } finally {
      this.textBytes = base + block.length + 1;
    }
  }

  private scan(block: string, base: number): void {
    let at = 0;
    let begin = -2;
    let hqx = -2;
    while (at < block.length) {
      if (!this.current) {
        if (this.overflow) return;
        if (begin !== -1 && begin < at) begin = block.indexOf('begin', at);
        if (hqx !== -1 && hqx < at) hqx = block.indexOf(BINHEX, at);
        if (begin < 0 && hqx < 0) return;
        const b = begin < 0 ? hqx : hqx < 0 ? begin : Math.min(begin, hqx);
        const start = b === begin && b >= 2 && block.startsWith('=y', b - 2) ? b - 2 : b;
        if (start > 0 && block.charCodeAt(start - 1) !== 10) {
          at = b + 1;
          continue;
        }
        at = start;
      }
      const eol = block.indexOf('\n', at);
      const end = eol < 0 ? block.length : eol;
      // Text up to this line's end, not the block's: text after a file cannot hide its padding.
      this.textBytes = base + end + 1;
      this.line(block.slice(at, end));
      at = end + 1;
    }
  }

  /** Stops keeping any file whole, the current one and those that ended already: no memory for them. */
  drop(): void {
    this.noRoom = true;
    for (const file of this.files) {
      if (!file.whole) continue;
      file.whole = false;
      file.busy = true;
      file.chunks.length = 0;
    }
    this.keptBytes = 0;
  }

  /** One line of the text, without its line ending. */
  line(text: string): void {
    const line = text.replace(/\r$/, '');
    const opens = this.opening(line);
    if (opens) {
      // Another file's first line ends the open one, as in Thunderbird.
      this.close();
      // A file past the cap is not read, but the part says so (a members limit), never silently.
      if (this.files.length >= MAX_FILES) return void (this.overflow = true);
      this.current = { name: opens.name, types: [], chunks: [], bytes: 0, whole: false, tooBig: false, busy: false, decided: false };
      this.mode = opens.mode;
      this.files.push(this.current);
      if (opens.mode === 'hqx') this.add(this.current, Buffer.from(`${line}\n`, 'latin1'));
      return;
    }
    const file = this.current;
    if (!file) return;
    const first = line.charCodeAt(0);
    if (this.mode === 'hqx') {
      if (!file.decided || file.whole) this.add(file, Buffer.from(`${line}\n`, 'latin1'));
      if (line.length !== 0 && line.length !== 64) this.close();
      return;
    }
    const ends =
      this.mode === 'base64'
        ? line === '===='
        : this.mode === 'yenc'
          ? line.startsWith('=yend')
          : first === 0x20 || first === 0x09 || ((first | 0x20) === 0x65 && /^end/i.test(line));
    if (ends) return this.close();
    // Past the head of a file not kept whole: only its end is looked for.
    if (file.decided && !file.whole) return;
    if (line.length === 0 || (this.mode === 'yenc' && line.startsWith('=ypart'))) return;
    const data = this.mode === 'base64' ? base64Line(line) : this.mode === 'yenc' ? yencLine(line) : uuLine(line);
    if (!data) return this.close();
    if (data.length) this.add(file, data);
  }

  /** The file a line opens, if it is the first line of one. */
  private opening(line: string): { name: string; mode: Mode } | null {
    const first = line.charCodeAt(0);
    if (first === 0x62) {
      const m = BEGIN.exec(line);
      return m ? { name: m[2], mode: m[1] ? 'base64' : 'uu' } : null;
    }
    if (first === 0x3d) {
      const m = YBEGIN.exec(line);
      return m ? { name: m[1], mode: 'yenc' } : null;
    }
    // Its name is inside, for unar to read.
    return first === 0x28 && line.startsWith(BINHEX) ? { name: '', mode: 'hqx' } : null;
  }

  /** The text ended: a file still open ends here. */
  end(): void {
    this.close();
  }

  /**
   * Whether files are held whole now, the current one or any that ended already (the caller
   * reserves memory for them): an archive that begins and ends within one block fed holds its
   * bytes until the part is walked all the same.
   */
  get keepingWhole(): boolean {
    return this.keptBytes > 0;
  }

  /** Bytes held whole now: more than the text they came from when trimmed lines were padded. */
  get heldBytes(): number {
    return this.keptBytes;
  }

  private add(file: UuFile, data: Buffer): void {
    file.chunks.push(data);
    file.bytes += data.length;
    if (file.whole) this.keptBytes += data.length;
    if (!file.decided && file.bytes >= HEAD_BYTES) this.decide(file);
    this.fit(file);
  }

  /** A file kept whole that takes the part's files past `maxBytes` is too big (read no further). */
  private fit(file: UuFile): void {
    if (!file.whole || this.keptBytes <= this.maxBytes) return;
    if (this.keptBytes > this.textBytes) file.padded = true;
    this.keptBytes -= file.bytes;
    file.whole = false;
    file.tooBig = true;
    file.chunks.length = 0;
  }

  private decide(file: UuFile): void {
    file.decided = true;
    const all = Buffer.concat(file.chunks);
    file.types = detectType(all.subarray(0, HEAD_BYTES));
    const walked = this.keepWhole(file);
    file.whole = walked && !this.noRoom;
    file.busy = walked && this.noRoom;
    file.chunks.length = 0;
    file.chunks.push(file.whole ? all : all.subarray(0, 0));
    if (file.whole) this.keptBytes += file.bytes;
  }

  private close(): void {
    const file = this.current;
    this.current = null;
    if (!file || file.decided) return;
    // A file shorter than HEAD_BYTES is typed only here: held to maxBytes with the others too.
    this.decide(file);
    this.fit(file);
  }
}

/**
 * One line of traditional uuencode: its first character gives the byte count. Characters past
 * the line's end count as spaces (zero bits), as Thunderbird reads a line a gateway trimmed.
 */
function uuLine(line: string): Buffer {
  const n = (line.charCodeAt(0) - 32) & 63;
  if (n === 0) return Buffer.alloc(0);
  const chars = Math.ceil(n / 3) * 4;
  const out = Buffer.alloc(Math.ceil(n / 3) * 3);
  const at = (i: number) => (i < line.length ? (line.charCodeAt(i) - 32) & 63 : 0);
  let o = 0;
  for (let i = 1; i < 1 + chars; i += 4) {
    const a = at(i);
    const b = at(i + 1);
    const c = at(i + 2);
    const d = at(i + 3);
    out[o++] = (a << 2) | (b >> 4);
    out[o++] = ((b & 15) << 4) | (c >> 2);
    out[o++] = ((c & 3) << 6) | d;
  }
  return out.subarray(0, n);
}

/** One line of yEnc: each byte plus 42, "=" escaping the next (plus 64 more). */
function yencLine(line: string): Buffer {
  const out = Buffer.alloc(line.length);
  let o = 0;
  for (let i = 0; i < line.length; i++) {
    let c = line.charCodeAt(i);
    if (c === 0x3d && i + 1 < line.length) c = line.charCodeAt(++i) - 64;
    out[o++] = (c - 42) & 0xff;
  }
  return out.subarray(0, o);
}

function base64Line(line: string): Buffer | null {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(line)) return null;
  return Buffer.from(line, 'base64');
}
