/**
 * The zip central-directory reader on archives Info-ZIP made (plain, stored, zip64, encrypted,
 * UTF-8 names), and on damaged ones: a truncated directory, sizes that lie, a member count
 * that lies. It lists what it can and says what is wrong, never throws.
 */
import { inflateBounded } from '../../../src/lib/archive/inflate';
import { localName, memberData, readZipDirectory, TAIL_TOO_SHORT, zipFlavour } from '../../../src/lib/archive/zip';
import { makeZip } from '../../helpers/archives';

const never = new AbortController().signal;

describe('zip directory', () => {
  const zip = makeZip({ 'a.txt': 'alpha '.repeat(100), 'dir/b.exe': 'MZ...', 'c.bin': Buffer.alloc(10) });

  it('lists the members Info-ZIP wrote, in order, with their sizes', () => {
    const dir = readZipDirectory(zip, 100);
    expect(dir.problem).toBeUndefined();
    expect(dir.entries.map((e) => [e.name, e.uncompressedSize, e.encrypted])).toEqual([
      ['a.txt', 600, false],
      ['dir/b.exe', 5, false],
      ['c.bin', 10, false],
    ]);
  });

  it('gives back each member through its local header, and it inflates to what was stored', async () => {
    const dir = readZipDirectory(zip, 100);
    const a = dir.entries[0];
    expect(a.method).toBe(8);
    const data = memberData(zip, a);
    if (typeof data === 'string') throw new Error(data);
    const out = await inflateBounded('raw', data, { keepBytes: 1000, needAll: true, maxBytes: 1000, maxRatio: 1000, ratioFloorBytes: 0, signal: never });
    expect(out.data.toString()).toBe('alpha '.repeat(100));
  });

  it('reads a zip64 archive (zip -fz)', () => {
    const z64 = makeZip({ 'hello.txt': 'hello\n' }, { zip64: true });
    expect(z64.includes(Buffer.from('PK\x06\x07', 'latin1'))).toBe(true);
    const dir = readZipDirectory(z64, 10);
    expect(dir.problem).toBeUndefined();
    expect(dir.entries).toHaveLength(1);
    expect(dir.entries[0].uncompressedSize).toBe(6);
    expect(typeof memberData(z64, dir.entries[0])).not.toBe('string');
  });

  it('marks members of a password-protected zip as encrypted', () => {
    const enc = makeZip({ 'secret.pdf': '%PDF-1.4' }, { password: 'pw' });
    expect(readZipDirectory(enc, 10).entries[0]).toMatchObject({ name: 'secret.pdf', encrypted: true });
  });

  it('reads UTF-8 names (flag bit 11, the Unicode path field, or bytes that are UTF-8)', () => {
    const z = makeZip({ 'März.txt': 'x' });
    expect(readZipDirectory(z, 10).entries[0].name).toBe('März.txt');
  });

  it('stops at maxEntries and says the listing is truncated', () => {
    const many = makeZip(Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`f${i}.txt`, 'x'])));
    const dir = readZipDirectory(many, 5);
    expect(dir.entries).toHaveLength(5);
    expect(dir.truncated).toBe(true);
  });

  it('tells an OOXML document and a Java archive by their members', () => {
    expect(zipFlavour(readZipDirectory(makeZip({ '[Content_Types].xml': '<x/>', '_rels/.rels': '<x/>', 'word/document.xml': '<x/>' }), 10).entries)).toBe('ooxml');
    expect(zipFlavour(readZipDirectory(makeZip({ '[Content_Types].xml': '<x/>', 'word/document.xml': '<x/>' }), 10).entries)).toBe('ooxml');
    expect(zipFlavour(readZipDirectory(makeZip({ '[Content_Types].xml': '<x/>', 'evil.js': 'x' }), 10).entries)).toBeNull();
    expect(zipFlavour(readZipDirectory(makeZip({ 'META-INF/MANIFEST.MF': 'Manifest-Version: 1.0\n' }), 10).entries)).toBe('jar');
  });
});

describe('a damaged zip', () => {
  const zip = makeZip({ 'one.txt': 'first', 'two.exe': 'second', 'three.txt': 'third' }, { store: true });
  const dir = readZipDirectory(zip, 100);
  const eocd = zip.lastIndexOf(Buffer.from('PK\x05\x06', 'latin1'));
  const cdOffset = zip.readUInt32LE(eocd + 16);

  it('without its end record is reported, not thrown', () => {
    expect(readZipDirectory(zip.subarray(0, eocd), 100)).toEqual({ entries: [], truncated: false, problem: 'no end of central directory' });
  });

  it('with a directory cut short keeps the members before the cut', () => {
    const second = zip.indexOf(Buffer.from('PK\x01\x02', 'latin1'), cdOffset + 4);
    const cut = Buffer.concat([zip.subarray(0, second + 20), zip.subarray(eocd)]);
    // The end record still says where the directory was and how long: it now runs past the data.
    const r = readZipDirectory(cut, 100);
    expect(r.problem).toBeDefined();
    expect(r.entries.length).toBeLessThan(3);
  });

  it('whose end record claims more members than there are says so after the real ones', () => {
    const lying = Buffer.from(zip);
    lying.writeUInt16LE(50, eocd + 10);
    const r = readZipDirectory(lying, 100);
    expect(r.entries.map((e) => e.name)).toEqual(['one.txt', 'two.exe', 'three.txt']);
    expect(r.problem).toMatch(/^member 4:/);
  });

  it('whose member claims data past the end gives a problem for that member only', () => {
    const e = dir.entries[1];
    expect(memberData(zip, { ...e, compressedSize: zip.length })).toBe('member data out of bounds');
    expect(memberData(zip, { ...e, localHeaderOffset: zip.length - 10 })).toBe('local header missing');
  });

  it('with a name length past the directory stops there', () => {
    const bad = Buffer.from(zip);
    bad.writeUInt16LE(0xffff, cdOffset + 28);
    expect(readZipDirectory(bad, 100)).toMatchObject({ entries: [], problem: 'member 1: name or extra field out of bounds' });
  });
});

describe('the end of a zip too big to hold', () => {
  it('lists every member from the directory in the end, and the data of those whose local header is in it', () => {
    const z = makeZip({ 'pad.bin': Buffer.alloc(100_000, 0x61), 'run.exe': 'MZ-and-more' }, { store: true });
    const tail = z.subarray(z.length - 50_000);
    expect(readZipDirectory(tail, 10)).toMatchObject({ entries: [] });
    const dir = readZipDirectory(tail, 10, z.length - tail.length);
    expect(dir.problem).toBeUndefined();
    expect(dir.entries.map((e) => e.name)).toEqual(['pad.bin', 'run.exe']);
    // The padding's header is before the end kept: none, and no throw on its negative offset.
    expect(dir.entries[0].localHeaderOffset).toBeLessThan(0);
    expect(memberData(tail, dir.entries[0])).toBe('local header missing');
    expect(localName(tail, dir.entries[0])).toBeNull();
    expect(String(memberData(tail, dir.entries[1]))).toBe('MZ-and-more');
    expect(localName(tail, dir.entries[1])).toBe('run.exe');
  });

  it('finds a directory whose size the end record understates by its offset less the bytes not kept', () => {
    const z = Buffer.from(makeZip({ 'pad.bin': Buffer.alloc(100_000, 0x61), 'run.exe': 'MZ-and-more' }, { store: true }));
    const eocd = z.lastIndexOf(Buffer.from('PK\x05\x06', 'latin1'));
    z.writeUInt32LE(z.readUInt32LE(eocd + 12) - 10, eocd + 12);
    const tail = z.subarray(z.length - 50_000);
    expect(readZipDirectory(tail, 10, z.length - tail.length).entries.map((e) => e.name)).toEqual(['pad.bin', 'run.exe']);
  });

  it('says when the directory starts before the end kept, and whether it has more members than asked for', () => {
    const z = makeZip({ 'one.txt': 'a', 'two.exe': 'MZ', 'three.txt': 'c' }, { store: true });
    const tail = z.subarray(z.length - 60);
    expect(readZipDirectory(tail, 10, z.length - 60)).toEqual({ entries: [], truncated: false, problem: TAIL_TOO_SHORT });
    expect(readZipDirectory(tail, 2, z.length - 60)).toEqual({ entries: [], truncated: true, problem: TAIL_TOO_SHORT });
  });
});
