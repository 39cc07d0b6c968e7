/**
 * Lists the members of a tar archive held in memory (POSIX.1-2001 ustar and pax, GNU tar's
 * long names, old v7): 512-byte headers, each followed by its data padded to 512. Names come
 * from a pax `path=` record or a GNU `L` member when there is one, else prefix + name.
 *
 * Never throws: a header whose checksum is wrong, a size that runs past the buffer, or a pax
 * record that does not parse ends the listing with `problem` (the members before it are kept);
 * at most `maxEntries` members are listed (`truncated`). Members are views into the buffer.
 * TarScanner lists the same from a stream that is not kept (a tar too big to hold), with only
 * each member's first bytes, or all of those its `keepWhole` chooses.
 */
import { tarChecksumOk } from './magic';

export interface TarEntry {
  readonly name: string;
  /** Regular file data; empty for directories and links. */
  readonly data: Buffer;
  readonly file: boolean;
}

export interface TarListing {
  readonly entries: readonly TarEntry[];
  readonly truncated: boolean;
  readonly problem?: string;
}

const BLOCK = 512;
/** A pax or GNU long-name member is names, not files: more than this is not a name. */
const MAX_META_BYTES = 64 * 1024;

function field(h: Buffer, start: number, length: number): string {
  const raw = h.subarray(start, start + length);
  const nul = raw.indexOf(0);
  return raw.subarray(0, nul < 0 ? raw.length : nul).toString('utf8');
}

/** Octal, or GNU base-256 (high bit of the first byte set); -1 when it is neither. */
function size(h: Buffer): number {
  if (h[124] & 0x80) {
    let v = 0;
    for (let i = 125; i < 136; i++) v = v * 256 + h[i];
    return v <= Number.MAX_SAFE_INTEGER ? v : -1;
  }
  const text = h
    .toString('latin1', 124, 136)
    .replace(/[\0 ]+$/, '')
    .trim();
  if (text === '') return 0;
  return /^[0-7]+$/.test(text) ? Number.parseInt(text, 8) : -1;
}

/**
 * The `path` of pax extended header records ("<len> <key>=<value>\n", POSIX.1-2001): `len`
 * counts bytes, so records are walked on the raw bytes and only values are decoded (decoding
 * first would miscount any multibyte character and skip a path record). undefined when a
 * record does not parse: a record GNU tar reads and this does not would be a name unchecked.
 */
function paxPath(data: Buffer): string | null | undefined {
  let at = 0;
  let path: string | null = null;
  while (at < data.length) {
    if (data[at] === 0 && data.subarray(at).every((c) => c === 0)) break;
    const space = data.indexOf(0x20, at);
    if (space < 0 || space - at > 20) return undefined;
    const digits = data.toString('latin1', at, space);
    const len = /^[0-9]+$/.test(digits) ? Number.parseInt(digits, 10) : Number.NaN;
    if (!(len > space - at + 1) || at + len > data.length || data[at + len - 1] !== 0x0a) return undefined;
    const record = data.subarray(space + 1, at + len - 1);
    const eq = record.indexOf(0x3d);
    if (eq < 1) return undefined;
    if (record.toString('latin1', 0, eq) === 'path') path = record.subarray(eq + 1).toString('utf8');
    at += len;
  }
  return path;
}

export function listTar(b: Buffer, maxEntries: number): TarListing {
  const entries: TarEntry[] = [];
  let longName: string | null = null;
  for (let at = 0; at + BLOCK <= b.length; ) {
    const h = b.subarray(at, at + BLOCK);
    if (h.every((v) => v === 0)) return { entries, truncated: false };
    if (!tarChecksumOk(h)) return { entries, truncated: false, problem: `bad header checksum at ${at}` };
    const n = size(h);
    const type = String.fromCharCode(h[156] || 0x30);
    const dataStart = at + BLOCK;
    if (n < 0 || dataStart + n > b.length) return { entries, truncated: false, problem: `member size out of bounds at ${at}` };
    const data = b.subarray(dataStart, dataStart + n);
    at = dataStart + Math.ceil(n / BLOCK) * BLOCK;
    if (type === 'L' || type === 'x') {
      if (n > MAX_META_BYTES) return { entries, truncated: false, problem: 'long name record too large' };
      const name = type === 'L' ? field(data, 0, data.length) : paxPath(data);
      if (name === undefined) return { entries, truncated: false, problem: 'bad pax record' };
      if (name) longName = name;
      continue;
    }
    if (type === 'g' || type === 'K') continue;
    if (entries.length >= maxEntries) return { entries, truncated: true };
    const ustar = h.toString('latin1', 257, 262) === 'ustar';
    const prefix = ustar ? field(h, 345, 155) : '';
    const name = longName ?? (prefix ? `${prefix}/${field(h, 0, 100)}` : field(h, 0, 100));
    longName = null;
    const file = type === '0' || type === '7';
    entries.push({ name, data: file ? data : Buffer.alloc(0), file });
  }
  return { entries, truncated: false };
}

/** A member a TarScanner saw: its name and the first bytes of its data (for its type). */
export interface ScannedTarEntry {
  readonly name: string;
  readonly head: Buffer;
  readonly file: boolean;
  /** `head` is all of its data (a file of at most `wholeBytes`, read to its end). */
  readonly whole: boolean;
}

/**
 * The same listing as listTar, from a tar that streams past and is not kept (one too big to
 * hold, expand.ts): headers are read as they come, of each member only the first `headBytes`
 * are kept. `done` once the end, damage (`problem`) or `maxEntries` (`truncated`) is reached.
 */
export class TarScanner {
  /** Members read and not yet taken (a reader may splice them out as they come). */
  readonly entries: ScannedTarEntry[] = [];
  /** Members begun, taken or not: what maxEntries counts. */
  private count = 0;
  problem?: string;
  truncated = false;
  done = false;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Bytes the header or meta step waits for. */
  private need = BLOCK;
  private step: 'header' | 'meta' | 'data' = 'header';
  private metaType = '';
  private metaSize = 0;
  private longName: string | null = null;
  /** In the data step: real bytes, then padding, left; the head being kept (null: none). */
  private real = 0;
  private pad = 0;
  private head: { name: string; file: boolean; parts: Buffer[]; bytes: number; keep: number; size: number; asked: boolean } | null = null;

  constructor(
    private readonly maxEntries: number,
    private readonly headBytes: number,
    /** Asked once the head of a file longer than it is in: whether to keep all `size` bytes (a small archive, to walk into). */
    private readonly keepWhole: (name: string, head: Buffer, size: number) => boolean = () => false,
  ) {}

  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length && !this.done) {
      if (this.step === 'data') {
        let n = Math.min(this.real + this.pad, chunk.length - at);
        const h = this.head;
        if (h && h.bytes < h.keep && this.real > 0) {
          // Up to the head first; past it, all of the member only when keepWhole wants it.
          n = Math.min(n, this.real, (h.asked ? h.keep : Math.min(h.keep, this.headBytes)) - h.bytes);
          h.parts.push(Buffer.from(chunk.subarray(at, at + n)));
          h.bytes += n;
          if (!h.asked && h.bytes >= this.headBytes) {
            h.asked = true;
            if (h.size > h.bytes && this.keepWhole(h.name, Buffer.concat(h.parts), h.size)) h.keep = h.size;
          }
        }
        const realPart = Math.min(n, this.real);
        this.real -= realPart;
        this.pad -= n - realPart;
        at += n;
        if (this.real + this.pad === 0) this.endMember();
        continue;
      }
      const take = Math.min(this.need - this.pendingBytes, chunk.length - at);
      this.pending.push(Buffer.from(chunk.subarray(at, at + take)));
      this.pendingBytes += take;
      at += take;
      if (this.pendingBytes < this.need) continue;
      const block = Buffer.concat(this.pending);
      this.pending = [];
      this.pendingBytes = 0;
      if (this.step === 'header') this.onHeader(block);
      else this.onMeta(block);
    }
  }

  private fail(problem: string): void {
    this.problem = problem;
    this.done = true;
  }

  private onHeader(h: Buffer): void {
    if (h.every((v) => v === 0)) return void (this.done = true);
    if (!tarChecksumOk(h)) return this.fail('bad header checksum');
    const n = size(h);
    if (n < 0) return this.fail('bad member size');
    const type = String.fromCharCode(h[156] || 0x30);
    const padded = Math.ceil(n / BLOCK) * BLOCK;
    if (type === 'L' || type === 'x') {
      if (n > MAX_META_BYTES) return this.fail('long name record too large');
      this.metaType = type;
      this.metaSize = n;
      if (padded === 0) return this.onMeta(Buffer.alloc(0));
      this.step = 'meta';
      this.need = padded;
      return;
    }
    if (type !== 'g' && type !== 'K') {
      if (this.count >= this.maxEntries) {
        this.truncated = true;
        this.done = true;
        return;
      }
      const ustar = h.toString('latin1', 257, 262) === 'ustar';
      const prefix = ustar ? field(h, 345, 155) : '';
      const name = this.longName ?? (prefix ? `${prefix}/${field(h, 0, 100)}` : field(h, 0, 100));
      this.longName = null;
      const file = type === '0' || type === '7';
      this.head = { name, file, parts: [], bytes: 0, keep: this.headBytes, size: n, asked: false };
      this.count++;
    }
    this.step = 'data';
    this.real = n;
    this.pad = padded - n;
    if (padded === 0) this.endMember();
  }

  private onMeta(data: Buffer): void {
    const record = data.subarray(0, this.metaSize);
    const name = this.metaType === 'L' ? field(record, 0, record.length) : paxPath(record);
    if (name === undefined) return this.fail('bad pax record');
    if (name) this.longName = name;
    this.step = 'header';
    this.need = BLOCK;
  }

  private endMember(): void {
    const h = this.head;
    if (h) this.entries.push({ name: h.name, file: h.file, head: h.file ? Buffer.concat(h.parts) : Buffer.alloc(0), whole: h.file && h.bytes === h.size });
    this.head = null;
    this.step = 'header';
    this.need = BLOCK;
  }

  /** The members not yet taken from `entries`, then the one being read when the stream stopped (its head so far). */
  finish(): ScannedTarEntry[] {
    if (this.head && !this.done) this.endMember();
    return this.entries;
  }
}
