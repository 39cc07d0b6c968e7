/**
 * Reads the central directory of a zip archive held in memory (PKWARE APPNOTE 6.3.10: end of
 * central directory, zip64 end record and locator, central file headers, the local header of
 * a member) and hands out each member's compressed bytes; archive/inflate.ts decompresses.
 *
 * Hand-written, not yauzl: the archive is already a Buffer (decoded from a MIME part or an
 * outer archive, capped), only names, flags, sizes and bounded data are wanted, and a damaged
 * archive must still give what it has: every member read before the damage, then a `problem`.
 * Measured (yauzl 3.4.0 fromBuffer, lazyEntries, validateEntrySizes) on 5,000 mutations of
 * one 4-member Info-ZIP archive (bytes overwritten, cut or repeated, half of them in the last
 * 200 bytes): neither threw; this reader recovered 8,917 of the 20,000 names and all four in
 * 1,742 archives, yauzl 7,699 and 1,466, never more than this one for any archive (it stops
 * at the first bad entry and its end-record checks are stricter), in 70 ms against 364 ms.
 * Every offset and length is checked against the buffer before use, and
 * test/lib/archive/zip-fuzz.test.ts throws mutated and random archives at it.
 *
 * Names: UTF-8 when flag bit 11 says so, or the bytes are valid UTF-8 (what Info-ZIP on Unix
 * writes); otherwise Latin-1 (CP437 differs only above 0x7f, never in an extension). An
 * Info-ZIP Unicode Path field (0x7075) whose CRC matches the raw name is what unzip and 7-Zip
 * extract as, so it is a name too; one whose CRC does not match is ignored, as unzip does.
 * Every name is kept (`names`): the raw one is what other tools show, and a crafted archive
 * makes them differ.
 * Never throws: damage is `problem`, at most `maxEntries` members are read (`truncated`).
 */
import zlib from 'node:zlib';

export interface ZipEntry {
  /** The name tools extract as: the Unicode Path field's when valid, else the raw name. */
  readonly name: string;
  /** Every name the entry has (the raw name first, then a valid Unicode Path name that differs). */
  readonly names: readonly string[];
  /** Bit 0 of the general purpose flags, or AES (method 99): contents unreadable without a password. */
  readonly encrypted: boolean;
  /** 0 stored, 8 deflate; anything else is not decompressed here. */
  readonly method: number;
  readonly compressedSize: number;
  readonly uncompressedSize: number;
  readonly localHeaderOffset: number;
  readonly directory: boolean;
}

export interface ZipDirectory {
  readonly entries: readonly ZipEntry[];
  /** More members than `maxEntries`: the rest were not read. */
  readonly truncated: boolean;
  /** What was wrong, when something was (the entries before it are kept). */
  readonly problem?: string;
}

const ZIP64_LOCATOR = 0x07064b50;
const ZIP64_EOCD = 0x06064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;
const EOCD_BYTES = Buffer.from([0x50, 0x4b, 0x05, 0x06]);
export const TAIL_TOO_SHORT = 'central directory starts before the end kept';

/** A 64-bit field as a Number, or -1 when it would not fit one safely. */
function u64(b: Buffer, at: number): number {
  const v = b.readBigUInt64LE(at);
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? -1 : Number(v);
}

/** The end of central directory record: searched backwards over the largest comment (65535). */
function findEocd(b: Buffer): number {
  if (b.length < 22) return -1;
  // Native search (every decoded part's tail is asked: hasZipEnd), not a loop byte by byte,
  // over the last 64 KiB + 22 only.
  const lowest = Math.max(0, b.length - 22 - 0xffff);
  const at = b.subarray(lowest).lastIndexOf(EOCD_BYTES, b.length - 22 - lowest);
  return at < 0 ? -1 : lowest + at;
}

/** Whether the bytes end like a zip (an end record in the last 64 KiB + 22), whatever their start. */
export function hasZipEnd(b: Buffer): boolean {
  return b.length >= 22 && findEocd(b) >= 0;
}

interface Bounds {
  count: number;
  size: number;
  offset: number;
  /** Bytes in front of the archive (a self-extractor's program, junk): added to every offset. */
  shift: number;
}

/**
 * Where the directory is. Offsets are from the start of the archive, which bytes in front of it
 * move: when the directory is not at its offset but right before the end record (where it
 * always is), the difference is the prefix, added to every offset, as unzip does ("extra
 * bytes at beginning or within zipfile").
 */
function directoryBounds(b: Buffer, eocd: number, tail: number | null): Bounds | string {
  let count = b.readUInt16LE(eocd + 10);
  let size = b.readUInt32LE(eocd + 12);
  let offset = b.readUInt32LE(eocd + 16);
  let before = eocd;
  if (count === 0xffff || size === 0xffffffff || offset === 0xffffffff) {
    const loc = eocd - 20;
    if (loc < 0 || b.readUInt32LE(loc) !== ZIP64_LOCATOR) return 'zip64 locator missing';
    let rec = u64(b, loc + 8);
    // Its offset moves with a prefix too; without extensible data it ends at the locator.
    if ((rec < 0 || rec + 56 > b.length || b.readUInt32LE(rec) !== ZIP64_EOCD) && loc >= 56 && b.readUInt32LE(loc - 56) === ZIP64_EOCD) rec = loc - 56;
    if (rec < 0 || rec + 56 > b.length || b.readUInt32LE(rec) !== ZIP64_EOCD) return 'zip64 end record out of bounds';
    count = u64(b, rec + 32);
    size = u64(b, rec + 40);
    offset = u64(b, rec + 48);
    if (count < 0 || size < 0 || offset < 0) return 'zip64 sizes too large';
    before = rec;
  }
  let shift = 0;
  const expected = before - size;
  const at = (o: number) => o >= 0 && o + 4 <= b.length && b.readUInt32LE(o) === CENTRAL;
  if (tail !== null) {
    // A tail (the end of an archive too big to hold) lacks the front: the directory is the one
    // before the end record, or (a size that lies, which unzip compensates) the one at its offset
    // less the bytes not kept; offsets move back (negative for members before the tail).
    if (at(expected)) shift = expected - offset;
    else if (at(offset - tail)) shift = -tail;
    else if (expected < 0 || offset < tail) return { count, size, offset: -1, shift: 0 };
  } else if (!at(offset) && expected > offset && at(expected)) shift = expected - offset;
  if (offset + shift + size > b.length) return 'central directory out of bounds';
  return { count, size, offset: offset + shift, shift };
}

/**
 * `tail`: `b` is the end of an archive whose first `tail` bytes were not kept (past-cap.ts, a zip
 * too big to hold): the directory is found before the end record, and a member's local header
 * offset may be negative (before `b`: memberData and localName give none). A directory that
 * starts before `b` is not read: TAIL_TOO_SHORT, `truncated` when it has over maxEntries members.
 */
export function readZipDirectory(b: Buffer, maxEntries: number, tail: number | null = null): ZipDirectory {
  if (b.length < 22) return { entries: [], truncated: false, problem: 'too short for a zip' };
  const eocd = findEocd(b);
  if (eocd < 0) return { entries: [], truncated: false, problem: 'no end of central directory' };
  const bounds = directoryBounds(b, eocd, tail);
  if (typeof bounds === 'string') return { entries: [], truncated: false, problem: bounds };
  if (bounds.offset < 0) return { entries: [], truncated: bounds.count > maxEntries, problem: TAIL_TOO_SHORT };
  const entries: ZipEntry[] = [];
  // The directory's declared size is often wrong in damaged archives while its entries are
  // fine: entries are read by the count, each checked by its signature and against the end
  // of the buffer (as yauzl and unzip do), not against the declared size.
  const end = b.length;
  let at = bounds.offset;
  for (let i = 0; i < bounds.count; i++) {
    if (entries.length >= maxEntries) return { entries, truncated: true };
    const e = centralEntry(b, at, end, bounds.shift);
    if (typeof e === 'string') return { entries, truncated: false, problem: `member ${i + 1}: ${e}` };
    entries.push(e.entry);
    at = e.next;
  }
  return { entries, truncated: false };
}

function centralEntry(b: Buffer, at: number, end: number, shift: number): { entry: ZipEntry; next: number } | string {
  if (at + 46 > end) return 'central header out of bounds';
  if (b.readUInt32LE(at) !== CENTRAL) return 'bad central header signature';
  const flags = b.readUInt16LE(at + 8);
  const method = b.readUInt16LE(at + 10);
  let compressedSize = b.readUInt32LE(at + 20);
  let uncompressedSize = b.readUInt32LE(at + 24);
  const nameLength = b.readUInt16LE(at + 28);
  const extraLength = b.readUInt16LE(at + 30);
  const commentLength = b.readUInt16LE(at + 32);
  let localHeaderOffset = b.readUInt32LE(at + 42);
  const next = at + 46 + nameLength + extraLength + commentLength;
  if (next > end) return 'name or extra field out of bounds';
  const rawName = b.subarray(at + 46, at + 46 + nameLength);
  const extra = b.subarray(at + 46 + nameLength, at + 46 + nameLength + extraLength);
  const raw = flags & 0x800 ? rawName.toString('utf8') : legacyName(rawName);
  let name = raw;
  // Extra fields: zip64 sizes (0x0001) in the order of the fields that are all ones, Unicode path (0x7075).
  for (let x = 0; x + 4 <= extra.length; ) {
    const id = extra.readUInt16LE(x);
    const len = extra.readUInt16LE(x + 2);
    const data = extra.subarray(x + 4, x + 4 + len);
    if (data.length < len) return 'extra field out of bounds';
    if (id === 0x0001) {
      let p = 0;
      const take = () => {
        if (p + 8 > data.length) return -2;
        const v = u64(data, p);
        p += 8;
        return v;
      };
      if (uncompressedSize === 0xffffffff) uncompressedSize = take();
      if (compressedSize === 0xffffffff) compressedSize = take();
      if (localHeaderOffset === 0xffffffff) localHeaderOffset = take();
      if (uncompressedSize < 0 || compressedSize < 0 || localHeaderOffset < 0) return 'bad zip64 extra field';
    } else if (id === 0x7075 && data.length > 5 && data[0] === 1 && data.readUInt32LE(1) === zlib.crc32(rawName)) {
      name = data.subarray(5).toString('utf8');
    }
    x += 4 + len;
  }
  const entry: ZipEntry = {
    name,
    names: name === raw ? [raw] : [raw, name],
    encrypted: (flags & 1) === 1 || method === 99,
    method,
    compressedSize,
    uncompressedSize,
    localHeaderOffset: localHeaderOffset + shift,
    directory: name.endsWith('/') && uncompressedSize === 0,
  };
  return { entry, next };
}

/**
 * A name without the UTF-8 flag: Info-ZIP on Unix writes the bytes it was given, which today
 * are UTF-8; bytes that are not valid UTF-8 are read as Latin-1.
 */
function legacyName(raw: Buffer): string {
  if (!raw.some((c) => c >= 0x80)) return raw.toString('latin1');
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(raw);
  } catch {
    return raw.toString('latin1');
  }
}

/** The compressed bytes of a member, found through its local header; a string says what is wrong. */
export function memberData(b: Buffer, e: ZipEntry): Buffer | string {
  const at = e.localHeaderOffset;
  if (at < 0 || at + 30 > b.length || b.readUInt32LE(at) !== LOCAL) return 'local header missing';
  const start = at + 30 + b.readUInt16LE(at + 26) + b.readUInt16LE(at + 28);
  if (start + e.compressedSize > b.length) return 'member data out of bounds';
  return b.subarray(start, start + e.compressedSize);
}

/** The name in a member's local header (it may differ from the directory's in a crafted zip), or null. */
export function localName(b: Buffer, e: ZipEntry): string | null {
  const at = e.localHeaderOffset;
  if (at < 0 || at + 30 > b.length || b.readUInt32LE(at) !== LOCAL) return null;
  const length = b.readUInt16LE(at + 26);
  if (at + 30 + length > b.length) return null;
  const raw = b.subarray(at + 30, at + 30 + Math.min(length, 1024));
  return b.readUInt16LE(at + 6) & 0x800 ? raw.toString('utf8') : legacyName(raw);
}

/**
 * What a zip is by its members (the zip-based formats amavisd's file(1) tells apart): OOXML
 * (docx/xlsx/pptx), a Java archive, an Android package, an OpenDocument file.
 */
export function zipFlavour(entries: readonly ZipEntry[]): string | null {
  const names = new Set(entries.slice(0, 1000).map((e) => e.name));
  if (names.has('AndroidManifest.xml') && names.has('classes.dex')) return 'apk';
  // [Content_Types].xml alone is one file anyone can add; OOXML has its package
  // relationships or the part folder of Word, Excel or PowerPoint too.
  if (names.has('[Content_Types].xml') && (names.has('_rels/.rels') || [...names].some((n) => /^(?:word|xl|ppt)\/[^/]+\.xml$/.test(n)))) return 'ooxml';
  if (names.has('META-INF/MANIFEST.MF')) return 'jar';
  if (entries[0]?.name === 'mimetype') return 'odf';
  return null;
}
