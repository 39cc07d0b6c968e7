/**
 * Test archives made by the real Debian tools (Info-ZIP `zip`, GNU `tar`, `gzip`, 7-Zip's
 * `7zz`, `xz`, `bzip2`, `gcab`, `genisoimage`; RAR by hand, no free tool writes it) in a temp
 * folder, and MIME messages that carry them, for the banned stage and the archive readers.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { crc32, deflateRawSync } from 'node:zlib';

export type Files = Record<string, Buffer | string>;

const FILE_TIME = new Date('2026-01-01T00:00:00Z');

function inTempDir<T>(files: Files, run: (dir: string) => T): T {
  const dir = mkdtempSync(path.join(tmpdir(), 'postseal-archive-'));
  try {
    for (const [name, data] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(dir, 'in', name)), { recursive: true });
      writeFileSync(path.join(dir, 'in', name), data);
      // The tools write each file's time into the archive: a fixed one makes the same files
      // give the same bytes (a test that made a zip twice across a 2-second step got two).
      utimesSync(path.join(dir, 'in', name), FILE_TIME, FILE_TIME);
    }
    return run(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A zip made by Info-ZIP from `files` (in that order); `password` encrypts (ZipCrypto), `store`
 * does not compress, `zip64` forces zip64 records (-fz).
 */
export function makeZip(files: Files, opts: { password?: string; store?: boolean; zip64?: boolean } = {}): Buffer {
  return inTempDir(files, (dir) => {
    const args = [
      '-q',
      '-X',
      ...(opts.store ? ['-0'] : ['-9']),
      ...(opts.zip64 ? ['-fz'] : []),
      ...(opts.password ? ['-P', opts.password] : []),
      path.join(dir, 'out.zip'),
      ...Object.keys(files),
    ];
    execFileSync('zip', args, { cwd: path.join(dir, 'in') });
    return readFileSync(path.join(dir, 'out.zip'));
  });
}

/** A .tar.gz made by GNU tar and gzip. */
export function makeTarGz(files: Files): Buffer {
  return inTempDir(files, (dir) => {
    execFileSync('tar', ['-czf', path.join(dir, 'out.tar.gz'), '--format=gnu', ...Object.keys(files)], { cwd: path.join(dir, 'in') });
    return readFileSync(path.join(dir, 'out.tar.gz'));
  });
}

/** A plain tar made by GNU tar (pax format: long names in `path=` records). */
export function makeTar(files: Files): Buffer {
  return inTempDir(files, (dir) => {
    execFileSync('tar', ['-cf', path.join(dir, 'out.tar'), '--format=pax', ...Object.keys(files)], { cwd: path.join(dir, 'in') });
    return readFileSync(path.join(dir, 'out.tar'));
  });
}

/** gzip of one file, keeping its name in the header (gzip -N; -f: a name ending in .gz too). */
export function makeGzip(name: string, data: Buffer | string): Buffer {
  return inTempDir({ [name]: data }, (dir) => {
    execFileSync('gzip', ['-N', '-f', '-9', name], { cwd: path.join(dir, 'in') });
    return readFileSync(path.join(dir, 'in', `${name}.gz`));
  });
}

/**
 * A gzip whose data is stored, not compressed (deflate's stored blocks, zlib level 0), with
 * FNAME `name`: what a sender crafts to make a gzip as large as its content (padding that the
 * outer archive then compresses). Written here: the gzip tool has no level 0.
 */
export function storedGzip(name: string, data: Buffer | string): Buffer {
  const body = Buffer.from(data);
  const header = Buffer.from([0x1f, 0x8b, 8, 8, 0, 0, 0, 0, 0, 3]);
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc32(body), 0);
  trailer.writeUInt32LE(body.length >>> 0, 4);
  return Buffer.concat([header, Buffer.from(`${name}\0`, 'latin1'), deflateRawSync(body, { level: 0 }), trailer]);
}

/** A minimal ELF64 executable header (e_type ET_EXEC), as file(1) and the stage see one. */
export function elfExecutable(): Buffer {
  const b = Buffer.alloc(128);
  b.write('\x7fELF', 0, 'latin1');
  b[4] = 2;
  b[5] = 1;
  b[6] = 1;
  b.writeUInt16LE(2, 16);
  b.writeUInt16LE(0x3e, 18);
  return b;
}

/** The start of a PE executable: MZ, e_lfanew at 0x3c pointing at "PE\0\0". */
export function peExecutable(dll = false): Buffer {
  const b = Buffer.alloc(256);
  b.write('MZ', 0, 'latin1');
  b.writeUInt32LE(0x80, 0x3c);
  b.write('PE\0\0', 0x80, 'latin1');
  b.writeUInt16LE(dll ? 0x2102 : 0x0102, 0x80 + 22);
  return b;
}

export interface Attachment {
  readonly type: string;
  /** Raw Content-Disposition value (parameters as given); none when absent. */
  readonly disposition?: string;
  readonly data: Buffer | string;
  readonly encoding?: 'base64' | '7bit' | 'quoted-printable';
}

function encode(a: Attachment): string {
  const data = Buffer.isBuffer(a.data) ? a.data : Buffer.from(a.data);
  if ((a.encoding ?? 'base64') === 'base64') return (data.toString('base64').match(/.{1,76}/g) ?? []).join('\r\n');
  return data.toString('latin1');
}

/** Header fields as UTF-8 (RFC 6532: a name may be raw UTF-8), the body as the bytes it is. */
function entity(a: Attachment): Buffer {
  const head = [`Content-Type: ${a.type}`, `Content-Transfer-Encoding: ${a.encoding ?? 'base64'}`];
  if (a.disposition) head.push(`Content-Disposition: ${a.disposition}`);
  return Buffer.concat([Buffer.from(`${head.join('\r\n')}\r\n\r\n`, 'utf8'), Buffer.from(`${encode(a)}\r\n`, 'latin1')]);
}

/** A multipart/mixed message: a text part, then the attachments (parts 2, 3, ...). */
export function messageWith(attachments: readonly Attachment[], boundary = 'b0undary'): Buffer {
  const parts = [{ type: 'text/plain; charset=us-ascii', data: 'see attached\r\n', encoding: '7bit' as const }, ...attachments];
  const head = ['From: a@example.org', 'To: b@example.net', 'Subject: files', 'MIME-Version: 1.0', `Content-Type: multipart/mixed; boundary="${boundary}"`];
  const chunks: Buffer[] = [Buffer.from(`${head.join('\r\n')}\r\n\r\n`)];
  for (const p of parts) chunks.push(Buffer.from(`--${boundary}\r\n`), entity(p));
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(chunks);
}

/** An attachment named by Content-Disposition (and Content-Type name), base64. */
export function file(name: string, data: Buffer | string, type = 'application/octet-stream'): Attachment {
  return { type: `${type}; name="${name}"`, disposition: `attachment; filename="${name}"`, data };
}

/** A 7z made by Debian's 7-Zip (7zz); `password` encrypts the data, `encryptNames` the listing too (-mhe). */
export function make7z(files: Files, opts: { password?: string; encryptNames?: boolean; solid?: boolean } = {}): Buffer {
  return inTempDir(files, (dir) => {
    const args = [
      'a',
      '-bd',
      '-bso0',
      '-t7z',
      ...(opts.solid === false ? ['-ms=off'] : []),
      ...(opts.password ? [`-p${opts.password}`] : []),
      ...(opts.encryptNames ? ['-mhe=on'] : []),
    ];
    execFileSync('7zz', [...args, path.join(dir, 'out.7z'), '--', ...Object.keys(files)], { cwd: path.join(dir, 'in') });
    return readFileSync(path.join(dir, 'out.7z'));
  });
}

/** One file compressed by xz or bzip2 (their own tools). */
export function compressWith(tool: 'xz' | 'bzip2', data: Buffer | string): Buffer {
  return execFileSync(tool, ['-c'], { input: data, maxBuffer: 512 * 1024 * 1024 });
}

/** A Microsoft Cabinet made by gcab (-z: MSZIP compression). */
export function makeCab(files: Files): Buffer {
  return inTempDir(files, (dir) => {
    execFileSync('gcab', ['-c', '-z', path.join(dir, 'out.cab'), ...Object.keys(files)], { cwd: path.join(dir, 'in') });
    return readFileSync(path.join(dir, 'out.cab'));
  });
}

/**
 * An ISO 9660 image with Rock Ridge and (unless `joliet` is false) Joliet names, made by
 * genisoimage; `udf` adds a UDF file system (a bridge image), `hide` leaves those names out
 * of the ISO 9660 tree (genisoimage's UDF tree follows Joliet's, so without Joliet UDF keeps them).
 */
export function makeIso(files: Files, opts: { udf?: boolean; joliet?: boolean; hide?: readonly string[] } = {}): Buffer {
  return inTempDir(files, (dir) => {
    const extra = [...(opts.joliet === false ? [] : ['-J']), ...(opts.udf ? ['-udf'] : []), ...(opts.hide ?? []).flatMap((n) => ['-hide', n])];
    execFileSync('genisoimage', ['-quiet', '-R', ...extra, '-o', path.join(dir, 'out.iso'), path.join(dir, 'in')]);
    return readFileSync(path.join(dir, 'out.iso'));
  });
}

/**
 * A RAR 4 archive of stored (uncompressed) members, written here from the format's technical
 * note: no free tool writes RAR, and unar, which reads it, is the one under test. `encrypted`
 * sets a member's password flag (its data is then not readable, as for a real one); `size`
 * is the unpacked size to declare, when it is to differ from the data's (a lie).
 */
export function makeRar(members: Array<{ name: string; data: Buffer | string; encrypted?: boolean; size?: number }>): Buffer {
  const block = (type: number, flags: number, body: Buffer) => {
    const head = Buffer.alloc(5);
    head[0] = type;
    head.writeUInt16LE(flags, 1);
    head.writeUInt16LE(7 + body.length, 3);
    const crc = Buffer.alloc(2);
    crc.writeUInt16LE(crc32(Buffer.concat([head, body])) & 0xffff);
    return Buffer.concat([crc, head, body]);
  };
  const parts = [Buffer.from('Rar!\x1a\x07\x00', 'latin1'), block(0x73, 0, Buffer.alloc(6))];
  for (const m of members) {
    const data = Buffer.from(m.data);
    const name = Buffer.from(m.name, 'latin1');
    const body = Buffer.alloc(25 + name.length);
    body.writeUInt32LE(data.length, 0); // PACK_SIZE
    body.writeUInt32LE(m.size ?? data.length, 4); // UNP_SIZE
    body[8] = 2; // HOST_OS: Windows
    body.writeUInt32LE(crc32(data), 9); // FILE_CRC
    body.writeUInt32LE(0x5b8e0000, 13); // FTIME (DOS date and time)
    body[17] = 20; // UNP_VER 2.0
    body[18] = 0x30; // METHOD: store
    body.writeUInt16LE(name.length, 19);
    body.writeUInt32LE(0x20, 21); // ATTR: archive
    name.copy(body, 25);
    // 0x8000: data follows the header (LONG_BLOCK); 0x04: password.
    parts.push(block(0x74, 0x8000 | (m.encrypted ? 0x04 : 0), body), data);
  }
  parts.push(block(0x7b, 0x4000, Buffer.alloc(0)));
  return Buffer.concat(parts);
}

export interface TnefPart {
  /** attAttachTitle: the short name Outlook writes. */
  readonly title?: string;
  /** PR_ATTACH_LONG_FILENAME (UTF-16) in the attachment's MAPI properties. */
  readonly longName?: string;
  readonly data?: Buffer | string;
  /** Where the bytes go: attAttachData (Outlook), PR_ATTACH_DATA_BIN (Exchange), PR_ATTACH_DATA_OBJ (an embedded message). */
  readonly dataIn?: 'attribute' | 'binary' | 'object';
  /** Other bytes in PR_ATTACH_DATA_BIN besides attAttachData's. */
  readonly alsoBinary?: Buffer | string;
  /** PR_DISPLAY_NAME and PR_ATTACH_MIME_TAG (8-bit strings). */
  readonly displayName?: string;
  readonly mimeTag?: string;
}

/**
 * A TNEF stream (winmail.dat) written here from MS-OXTNEF, as no free tool writes one; Debian's
 * `tnef` reads what this writes, which the TNEF tests check, so the two readers are compared.
 */
export function makeTnef(parts: readonly TnefPart[]): Buffer {
  const attribute = (level: number, id: number, value: Buffer) => {
    const head = Buffer.alloc(9);
    head[0] = level;
    head.writeUInt32LE(id, 1);
    head.writeUInt32LE(value.length, 5);
    const sum = Buffer.alloc(2);
    sum.writeUInt16LE(value.reduce((n, b) => (n + b) & 0xffff, 0));
    return Buffer.concat([head, value, sum]);
  };
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    return b;
  };
  const padded = (b: Buffer) => Buffer.concat([b, Buffer.alloc((4 - (b.length % 4)) % 4)]);
  const property = (type: number, id: number, value: Buffer) => Buffer.concat([u32(type | (id << 16)), u32(1), u32(value.length), padded(value)]);
  const out = [Buffer.from([0x78, 0x9f, 0x3e, 0x22, 0x01, 0x00]), attribute(1, 0x00089006, u32(0x00010000)), attribute(1, 0x00069007, Buffer.concat([u32(1252), u32(0)]))];
  for (const p of parts) {
    out.push(attribute(2, 0x00069002, Buffer.alloc(14)));
    if (p.title !== undefined) out.push(attribute(2, 0x00018010, Buffer.from(`${p.title}\0`, 'latin1')));
    const data = p.data === undefined ? undefined : Buffer.from(p.data);
    if (data && (p.dataIn ?? 'attribute') === 'attribute') out.push(attribute(2, 0x0006800f, data));
    const props: Buffer[] = [];
    if (p.longName !== undefined) props.push(property(0x001f, 0x3707, Buffer.from(`${p.longName}\0`, 'utf16le')));
    if (data && p.dataIn === 'binary') props.push(property(0x0102, 0x3701, data));
    if (data && p.dataIn === 'object') props.push(property(0x000d, 0x3701, Buffer.concat([Buffer.alloc(16, 7), data])));
    if (p.alsoBinary !== undefined) props.push(property(0x0102, 0x3701, Buffer.from(p.alsoBinary)));
    if (p.displayName !== undefined) props.push(property(0x001e, 0x3001, Buffer.from(`${p.displayName}\0`, 'latin1')));
    if (p.mimeTag !== undefined) props.push(property(0x001e, 0x370e, Buffer.from(`${p.mimeTag}\0`, 'latin1')));
    // A fixed-size property between them, as Outlook writes PR_ATTACH_METHOD.
    props.push(Buffer.concat([u32(0x0003 | (0x3705 << 16)), u32(1)]));
    out.push(attribute(2, 0x00069005, Buffer.concat([u32(props.length), ...props])));
  }
  return Buffer.concat(out);
}

/** A file in BinHex 4.0, written by Perl's Convert::BinHex (Debian libconvert-binhex-perl, which amavisd-new uses). */
export function makeBinHex(name: string, data: Buffer | string): Buffer {
  const script =
    'use Convert::BinHex; local $/; my $d = <STDIN>; my $h = Convert::BinHex->new(); $h->filename($ARGV[0]); $h->type("APPL"); $h->creator("????"); $h->data(Data => $d); $h->resource(Data => ""); $h->encode(\\*STDOUT);';
  return execFileSync('perl', ['-e', script, name], { input: data, stdio: ['pipe', 'pipe', 'ignore'] });
}

/** `data` uuencoded by sharutils' uuencode as `name` (`base64`: uuencode -m, "begin-base64"). */
export function uuencode(name: string, data: Buffer | string, base64 = false): string {
  return execFileSync('uuencode', [...(base64 ? ['-m'] : []), name], { input: data, maxBuffer: 256 * 1024 * 1024 }).toString('latin1');
}

/**
 * A RAR 5 archive of stored members, written here from the RAR 5.0 technical note (as makeRar:
 * no free tool writes RAR). Names are UTF-8. `sizeUnknown` sets the file header's "unpacked
 * size unknown" flag (what `rar a -si` writes), the data area still holding the member.
 */
export function makeRar5(members: Array<{ name: string; data: Buffer | string; sizeUnknown?: boolean }>): Buffer {
  const vint = (n: number) => {
    const out: number[] = [];
    do {
      out.push((n & 0x7f) | (n >= 0x80 ? 0x80 : 0));
      n = Math.floor(n / 0x80);
    } while (n > 0);
    return Buffer.from(out);
  };
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n >>> 0);
    return b;
  };
  // CRC32 of the header from its size field; the size counts from the type field on.
  const header = (type: number, body: Buffer, dataSize?: number) => {
    const rest = Buffer.concat([vint(type), vint(dataSize === undefined ? 0 : 0x0002), dataSize === undefined ? Buffer.alloc(0) : vint(dataSize), body]);
    const sized = Buffer.concat([vint(rest.length), rest]);
    return Buffer.concat([u32(crc32(sized)), sized]);
  };
  const parts = [Buffer.from('Rar!\x1a\x07\x01\x00', 'latin1'), header(1, vint(0))];
  for (const m of members) {
    const data = Buffer.from(m.data);
    const name = Buffer.from(m.name, 'utf8');
    // File flags: 0x0004 data CRC32 present, 0x0008 unpacked size unknown. Compression info 0: stored. Host OS 0: Windows.
    const flags = 0x0004 | (m.sizeUnknown ? 0x0008 : 0);
    const body = Buffer.concat([vint(flags), vint(m.sizeUnknown ? 0 : data.length), vint(0x20), u32(crc32(data)), vint(0), vint(0), vint(name.length), name]);
    parts.push(header(2, body, data.length), data);
  }
  parts.push(header(5, vint(0)));
  return Buffer.concat(parts);
}
