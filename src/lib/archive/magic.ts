/**
 * The type of a file from its first bytes (magic numbers), named in amavisd-new's short-type
 * vocabulary (its `$map_full_type_to_short_type_re` over file(1)), so a site's amavisd
 * `$banned_filename_re` rules such as `qr'^\.(exe-ms)$'` keep their meaning: a type is a list,
 * most general first (a Windows DLL is `exe` and `dll`), matched by rules as ".exe", ".dll".
 *
 * Which types, and why these: what a banned-files policy acts on, and what must be told
 * apart so that a declared type or name cannot hide it.
 * - Programs that run when opened: PE/MZ (exe-ms, dll), ELF (exe-unix, so, o), Mach-O
 *   (exe-macho, amavisd's catch-all `exe` too), Windows shortcuts (lnk), scripts with a
 *   shebang (script), MS installers and Office documents share OLE2 (cdf-ms, doc).
 * - Containers that can hide the above: zip (and what a zip is by its members: OOXML, jar,
 *   apk, ODF; named in archive/zip.ts, where the members are known), rar, 7z, gzip, bzip2,
 *   xz, tar, cab, ISO 9660 images (used to smuggle executables past mark-of-the-web), and
 *   Outlook's TNEF (winmail.dat, `tnef` as amavisd names it), which carries attachments, and
 *   BinHex (`hqx`), a file encoded as text.
 * - Documents that carry exploits or active content often: pdf, rtf, html.
 * JavaScript, VBScript and batch files have no magic number (they are text), so they are
 * banned by name (rules.ts); plain text is `txt`, and anything else `dat` (amavisd's catch-all).
 *
 * Reads at most the first HEAD_BYTES bytes (ISO 9660's marker is at 32 KiB). Never fails:
 * unknown bytes are `dat`.
 */

/** Bytes of the start of a file that `detectType` looks at. */
export const HEAD_BYTES = 0x8006;

export type ShortTypes = readonly string[];

/** Types of formats this project unpacks (archive/expand.ts). */
export type ArchiveKind = 'zip' | 'tar' | 'gz' | 'tnef';

const starts = (b: Buffer, sig: readonly number[], at = 0) => b.length >= at + sig.length && sig.every((v, i) => b[at + i] === v);
const ascii = (b: Buffer, text: string, at = 0) => b.length >= at + text.length && b.toString('latin1', at, at + text.length) === text;

/** The short types of a file that starts with `head` (at most HEAD_BYTES are read). */
export function detectType(head: Buffer): ShortTypes {
  if (head.length === 0) return ['empty'];
  if (ascii(head, 'MZ') && !isText(head.subarray(0, 64))) return peTypes(head);
  if (starts(head, [0x7f, 0x45, 0x4c, 0x46])) return elfTypes(head);
  if (isMachO(head)) return ['exe', 'exe-macho'];
  if (ascii(head, 'PK\x03\x04') || ascii(head, 'PK\x05\x06') || ascii(head, 'PK\x07\x08')) return ['zip'];
  if (ascii(head, 'Rar!\x1a\x07')) return ['rar'];
  if (starts(head, [0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c])) return ['7z'];
  if (starts(head, [0x1f, 0x8b, 0x08])) return ['gz'];
  if (ascii(head, 'BZh') && head[3] >= 0x31 && head[3] <= 0x39) return ['bz2'];
  if (starts(head, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) return ['xz'];
  if (ascii(head, 'MSCF\0\0\0\0')) return ['cab'];
  if (starts(head, [0x78, 0x9f, 0x3e, 0x22])) return ['tnef'];
  if (starts(head, [0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1])) return ['doc', 'cdf-ms'];
  if (isLnk(head)) return ['lnk'];
  if (isTar(head)) return ['tar'];
  if (ascii(head, 'CD001', 0x8001)) return ['iso'];
  // A UDF-only image (ECMA-167 volume recognition at 32 KiB, no ISO 9660 descriptor), which
  // Windows mounts as it does an .iso: an image, though unar reads none (external.ts).
  if (['BEA01', 'NSR02', 'NSR03'].some((id) => ascii(head, id, 0x8001))) return ['iso', 'udf'];
  if (head.subarray(0, 1024).includes('%PDF-')) return ['pdf'];
  if (ascii(head, '{\\rt')) return ['rtf'];
  if (ascii(head, '#!')) return ['txt', 'script'];
  return textTypes(head);
}

/** Which of the formats this project unpacks the types name, if any. */
export function archiveKind(types: ShortTypes): ArchiveKind | null {
  if (types.includes('zip')) return 'zip';
  if (types.includes('tar')) return 'tar';
  if (types.includes('gz')) return 'gz';
  if (types.includes('tnef')) return 'tnef';
  return null;
}

/**
 * MZ: a DOS stub (its header holds NULs and small numbers, so "MZ" at the start of text, say a
 * bank statement, is not a program, as file(1) agrees); "PE\0\0" at e_lfanew makes it Windows, the DLL flag (0x2000) a library. */
function peTypes(b: Buffer): ShortTypes {
  if (b.length < 0x40) return ['exe', 'exe-ms'];
  const pe = b.readUInt32LE(0x3c);
  if (pe + 24 <= b.length && ascii(b, 'PE\0\0', pe)) {
    const characteristics = b.readUInt16LE(pe + 22);
    if (characteristics & 0x2000) return ['exe', 'dll'];
  }
  return ['exe', 'exe-ms'];
}

/**
 * ELF by e_type: ET_EXEC is a program; ET_DYN is a program when it asks for an interpreter
 * (PT_INTERP: a PIE executable, what file(1) calls "pie executable") and a library otherwise.
 */
function elfTypes(b: Buffer): ShortTypes {
  if (b.length < 0x34) return ['exe', 'exe-unix'];
  const is64 = b[4] === 2;
  const le = b[5] !== 2;
  const u16 = (at: number) => (le ? b.readUInt16LE(at) : b.readUInt16BE(at));
  const u32 = (at: number) => (le ? b.readUInt32LE(at) : b.readUInt32BE(at));
  const type = u16(16);
  if (type === 1) return ['o'];
  if (type !== 3) return ['exe', 'exe-unix'];
  if (is64 && b.length < 0x40) return ['exe', 'exe-unix'];
  const phoff = is64 ? Number(le ? b.readBigUInt64LE(0x20) : b.readBigUInt64BE(0x20)) : u32(0x1c);
  const phentsize = u16(is64 ? 0x36 : 0x2a);
  const phnum = u16(is64 ? 0x38 : 0x2c);
  for (let i = 0; i < phnum && phentsize >= 4; i++) {
    const at = phoff + i * phentsize;
    if (at + 4 > b.length) return ['exe', 'exe-unix'];
    if (u32(at) === 3) return ['exe', 'exe-unix'];
  }
  return ['so'];
}

/**
 * Mach-O thin (32/64 bit, either byte order) and fat binaries. A fat binary's 0xCAFEBABE is
 * also a Java class's magic: a fat binary's next word is a small count of architectures, a
 * class's is its version (45 or more in the high half).
 */
function isMachO(b: Buffer): boolean {
  if (b.length < 8) return false;
  const m = b.readUInt32BE(0);
  if (m === 0xfeedface || m === 0xfeedfacf || m === 0xcefaedfe || m === 0xcffaedfe) return true;
  return m === 0xcafebabe && b.readUInt32BE(4) > 0 && b.readUInt32BE(4) < 20;
}

/** Shell link: header size 0x4C and the CLSID 00021401-0000-0000-C000-000000000046. */
function isLnk(b: Buffer): boolean {
  return starts(b, [0x4c, 0, 0, 0, 0x01, 0x14, 0x02, 0x00, 0, 0, 0, 0, 0xc0, 0, 0, 0, 0, 0, 0, 0x46]);
}

/** ustar (POSIX and GNU) by its magic; an old v7 archive by its header checksum. */
export function isTar(b: Buffer): boolean {
  if (b.length < 512) return false;
  if (ascii(b, 'ustar', 257)) return true;
  return tarChecksumOk(b.subarray(0, 512)) && b[0] !== 0;
}

/** The header checksum: the sum of the header's bytes with the checksum field as spaces. */
export function tarChecksumOk(h: Buffer): boolean {
  const field = h
    .toString('latin1', 148, 156)
    .replace(/[\0 ]+$/, '')
    .trim();
  if (!/^[0-7]{1,7}$/.test(field)) return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i];
  return sum === Number.parseInt(field, 8);
}

/** Whether the bytes hold no control character that text does not use. */
function isText(sample: Buffer): boolean {
  for (let i = 0; i < sample.length; i++) {
    const c = sample[i];
    if (c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d && c !== 0x0c && c !== 0x1b) return false;
  }
  return true;
}

/** Text is `txt` (HTML `html`); bytes that are neither are `dat`. */
function textTypes(b: Buffer): ShortTypes {
  const sample = b.subarray(0, 4096);
  const start = starts(sample, [0xef, 0xbb, 0xbf]) ? 3 : 0;
  if (!isText(sample.subarray(start))) return ['dat'];
  const lead = sample
    .toString('latin1', start, start + 512)
    .trimStart()
    .slice(0, 64)
    .toLowerCase();
  if (lead.startsWith('<!doctype html') || lead.startsWith('<html') || lead.startsWith('<head') || lead.startsWith('<script')) return ['html'];
  // Classic Mac OS's BinHex 4.0 (what file(1) calls "BinHex binary text"): a file encoded as text.
  if (lead.startsWith('(this file must be converted with binhex')) return ['hqx'];
  return ['txt'];
}
