/**
 * The magic-byte table against file(1), the tool amavisd-new runs: for each sample, file(1)'s
 * description mapped through amavisd's own short-type table (the lines of
 * $map_full_type_to_short_type_re that concern these types, in its order) must give the types
 * detectType gives. Samples are made by the real tools where Debian has them (zip, tar, gzip,
 * bzip2, xz, /bin/ls), else built byte by byte and recognised by file(1) all the same.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { detectType, HEAD_BYTES } from '../../../src/lib/archive/magic';
import { elfExecutable, makeBinHex, makeTar, makeTnef, makeZip, peExecutable } from '../../helpers/archives';

/** amavisd-new's mapping (Amavis::Conf), the entries for the types in the table, first match wins. */
const AMAVISD_MAP: [RegExp, string[]][] = [
  [/^PDF document\b/, ['pdf']],
  [/^Rich Text Format data\b/, ['rtf']],
  [/^HTML document\b/, ['html']],
  [/^Composite Document File V2 Document\b/i, ['cdf-ms']],
  [/^gzip compressed\b/, ['gz']],
  [/^bzip2 compressed\b/, ['bz2']],
  [/^XZ compressed\b/i, ['xz']],
  [/^Zip archive\b/i, ['zip']],
  [/^7-zip archive\b/i, ['7z']],
  [/^RAR archive\b/i, ['rar']],
  [/^(\S+\s+)?tar archive\b/i, ['tar']],
  [/^Microsoft Cabinet (file|archive)\b/i, ['cab']],
  [/^ISO 9660 CD-ROM filesystem\b/i, ['iso']],
  [/^MS Windows shortcut\b/i, ['lnk']],
  [/^Transport Neutral Encapsulation Format\b/, ['tnef']],
  [/^BinHex\b/, ['hqx']],
  [/\bexecutable for MS Windows\b.*\bDLL\b/, ['exe', 'dll']],
  [/\(DLL\).*for MS Windows\b/, ['exe', 'dll']],
  [/\bexecutable\b.*\bfor MS Windows\b/, ['exe', 'exe-ms']],
  [/^ELF .*\bexecutable\b/, ['exe', 'exe-unix']],
  [/\bscript\b.* text executable\b/, ['txt', 'script']],
  [/\btext\b/i, ['txt']],
  [/^/, ['dat']],
];

const dir = mkdtempSync(path.join(tmpdir(), 'postseal-magic-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function fileSays(data: Buffer): string {
  const p = path.join(dir, 'sample');
  writeFileSync(p, data);
  return execFileSync('file', ['-b', p]).toString().trim();
}

function tool(cmd: string, args: string[], input: Buffer | string): Buffer {
  return execFileSync(cmd, args, { input, maxBuffer: 64 * 1024 * 1024 });
}

const iso = Buffer.alloc(0x8800);
iso[0x8000] = 1;
iso.write('CD001', 0x8001, 'latin1');
iso[0x8006] = 1;
const lnk = Buffer.alloc(0x4c + 20);
Buffer.from([0x4c, 0, 0, 0, 0x01, 0x14, 0x02, 0x00, 0, 0, 0, 0, 0xc0, 0, 0, 0, 0, 0, 0, 0x46]).copy(lnk);

const samples: Record<string, Buffer> = {
  'PE executable': withMachine(peExecutable()),
  'PE DLL': withMachine(peExecutable(true)),
  'ELF executable': elfExecutable(),
  '/bin/ls (PIE)': readFileSync('/bin/ls'),
  'zip (Info-ZIP)': makeZip({ 'a.txt': 'a' }),
  'TNEF (winmail.dat)': makeTnef([{ title: 'a.txt', data: 'a' }]),
  'BinHex (Convert::BinHex)': makeBinHex('a.exe', 'MZ'),
  'tar (GNU)': makeTar({ 'a.txt': 'a' }),
  gzip: tool('gzip', ['-c'], 'hello'),
  bzip2: tool('bzip2', ['-c'], 'hello'),
  xz: tool('xz', ['-c'], 'hello'),
  'ISO 9660': iso,
  'Windows shortcut': lnk,
  PDF: Buffer.from('%PDF-1.7\n1 0 obj\n<<>>\nendobj\n'),
  RTF: Buffer.from('{\\rtf1\\ansi hello}'),
  'shell script': Buffer.from('#!/bin/sh\necho hi\n'),
  text: Buffer.from('Dear customer,\nplease find attached.\n'),
  'text starting with MZ': Buffer.from('MZ Bank statement for October\nline two\n'),
};

/** A PE whose optional header file(1) reads (machine i386, GUI subsystem). */
function withMachine(b: Buffer): Buffer {
  b.writeUInt16LE(0x14c, 0x84);
  b.writeUInt16LE(0xe0, 0x80 + 20);
  b.writeUInt16LE(0x10b, 0x98);
  b.writeUInt16LE(2, 0x98 + 68);
  return b;
}

describe('detectType agrees with file(1) through amavisd-new mapping', () => {
  for (const [name, data] of Object.entries(samples)) {
    it(`for ${name}`, () => {
      const description = fileSays(data);
      const expected = AMAVISD_MAP.find(([re]) => re.test(description))![1];
      expect({ description, types: detectType(data.subarray(0, HEAD_BYTES)) }).toEqual({ description, types: expected });
    });
  }
});

describe('detectType', () => {
  it('calls an OLE2 compound document doc and cdf-ms', () => {
    expect(detectType(Buffer.from([0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1, 0, 0]))).toEqual(['doc', 'cdf-ms']);
  });

  it('tells a Java class from a Mach-O fat binary (both start CAFEBABE)', () => {
    const java = Buffer.from([0xca, 0xfe, 0xba, 0xbe, 0x00, 0x00, 0x00, 0x37]);
    const fat = Buffer.from([0xca, 0xfe, 0xba, 0xbe, 0x00, 0x00, 0x00, 0x02]);
    expect(detectType(java)).not.toContain('exe');
    expect(detectType(fat)).toEqual(['exe', 'exe-macho']);
  });

  it('says empty for nothing and dat for binary it does not know', () => {
    expect(detectType(Buffer.alloc(0))).toEqual(['empty']);
    expect(detectType(Buffer.from([1, 2, 3, 0, 5]))).toEqual(['dat']);
  });
});
