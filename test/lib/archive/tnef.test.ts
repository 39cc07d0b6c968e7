/**
 * The TNEF reader (winmail.dat) against Debian's `tnef`, on streams test/helpers/archives.ts
 * writes from MS-OXTNEF: the same attachment names in the same order, the bytes wherever
 * Outlook or Exchange put them, damage named with what was read kept, and no input that
 * makes it throw.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { listTnef } from '../../../src/lib/archive/tnef';
import { makeTnef, makeZip } from '../../helpers/archives';

const dir = mkdtempSync(path.join(tmpdir(), 'postseal-tnef-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The names Debian's tnef lists (`tnef -t`: "long name<TAB>|<TAB>name" per attachment). */
function tnefLists(data: Buffer): string[] {
  const file = path.join(dir, 'winmail.dat');
  writeFileSync(file, data);
  return execFileSync('tnef', ['-t', '-f', file])
    .toString()
    .trim()
    .split('\n')
    .map((l) => l.split('\t|\t')[0]);
}

describe('TNEF reader', () => {
  const stream = makeTnef([
    { title: 'INVOIC~1.EXE', longName: 'invoice.pdf.exe', data: 'MZ\0\0program' },
    { title: 'notes.txt', data: 'hello\r\n', dataIn: 'binary' },
    { longName: 'forwarded.msg', data: makeTnef([{ title: 'inner.scr', data: 'x' }]), dataIn: 'object' },
  ]);

  it('lists the attachments Debian tnef lists, in order, with every name each carries', () => {
    const listing = listTnef(stream, 100);
    expect(listing.problem).toBeUndefined();
    expect(listing.attachments.map((a) => a.names)).toEqual([['INVOIC~1.EXE', 'invoice.pdf.exe'], ['notes.txt'], ['forwarded.msg']]);
    expect(tnefLists(stream)).toEqual(['invoice.pdf.exe', 'notes.txt', 'forwarded.msg']);
  });

  it("gives each attachment's bytes: from attAttachData, PR_ATTACH_DATA_BIN, and PR_ATTACH_DATA_OBJ without its interface id", () => {
    const [a, b, c] = listTnef(stream, 100).attachments;
    expect(a.data.map((d) => d.toString('latin1'))).toEqual(['MZ\0\0program']);
    expect(b.data.map(String)).toEqual(['hello\r\n']);
    expect(listTnef(c.data[0], 100).attachments[0].names).toEqual(['inner.scr']);
  });

  it('gives both when the bytes are in two places that differ, and reads the display name and MIME tag', () => {
    const [a] = listTnef(makeTnef([{ title: 'a.txt', data: 'text', alsoBinary: 'MZ\0\0', displayName: 'a.txt.exe', mimeTag: 'Application/X-MSDownload' }]), 10).attachments;
    expect(a.data.map((d) => d.toString('latin1'))).toEqual(['text', 'MZ\0\0']);
    expect(a.names).toEqual(['a.txt', 'a.txt.exe']);
    expect(a.declaredTypes).toEqual(['application/x-msdownload']);
    const [same] = listTnef(makeTnef([{ title: 'a.txt', data: 'text', alsoBinary: 'text' }]), 10).attachments;
    expect(same.data).toHaveLength(1);
  });

  it('keeps a zip attached in a winmail.dat byte for byte, so it can be walked into', () => {
    const zip = makeZip({ 'a.exe': 'MZ' });
    expect(listTnef(makeTnef([{ title: 'a.zip', data: zip }]), 10).attachments[0].data[0].equals(zip)).toBe(true);
  });

  it('stops at the member cap', () => {
    const many = makeTnef(Array.from({ length: 12 }, (_, i) => ({ title: `f${i}.txt`, data: `${i}` })));
    const listing = listTnef(many, 5);
    expect(listing.truncated).toBe(true);
    expect(listing.attachments).toHaveLength(5);
  });

  it('names damage and keeps what it read: a cut stream, an unknown property type, a property count that lies', () => {
    const cut = listTnef(stream.subarray(0, stream.length - 30), 100);
    expect(cut.problem).toMatch(/runs past the end/);
    // The third attachment's properties, which hold its name and bytes, are what was cut.
    expect(cut.attachments.map((a) => a.names[0])).toEqual(['INVOIC~1.EXE', 'notes.txt', undefined]);
    // PR_ATTACH_METHOD's type (PT_LONG, 0x0003) made 0x0999.
    const odd = Buffer.from(makeTnef([{ title: 'a.txt', data: 'a' }]));
    const method = odd.indexOf(Buffer.from([0x03, 0x00, 0x05, 0x37]));
    odd.writeUInt16LE(0x0999, method);
    expect(listTnef(odd, 10).problem).toBe('MAPI property type 0x999');
    // The attachments after the one it could not read are still read.
    const then = Buffer.concat([odd, makeTnef([{ title: 'evil.exe', data: 'MZ' }]).subarray(makeTnef([]).length)]);
    expect(listTnef(then, 10)).toMatchObject({ problem: 'MAPI property type 0x999', attachments: [{ names: ['a.txt'] }, { names: ['evil.exe'] }] });
    const lying = Buffer.from(makeTnef([{ title: 'a.txt', data: 'a', longName: 'a.txt' }]));
    const props = lying.lastIndexOf(Buffer.from([0x05, 0x90, 0x06, 0x00])) + 8;
    lying.writeUInt32LE(5000, props);
    expect(listTnef(lying, 10).problem).toMatch(/^attachment property cut|property value count cut|attachment properties/);
    expect(listTnef(Buffer.from('not tnef at all'), 10).problem).toBe('no TNEF signature');
  });

  it("reads attAttachData and attAttachTitle whatever type word their ID carries, as Debian's tnef extracts them", () => {
    const zip = makeZip({ 'evil.exe': 'MZ' });
    const b = Buffer.from(makeTnef([{ title: 'docs.zip', data: zip }]));
    b.writeUInt16LE(0x0001, b.indexOf(Buffer.from([0x0f, 0x80, 0x06, 0x00])) + 2);
    b.writeUInt16LE(0x0006, b.indexOf(Buffer.from([0x10, 0x80, 0x01, 0x00])) + 2);
    const [a] = listTnef(b, 10).attachments;
    expect(a.names).toEqual(['docs.zip']);
    expect(a.data.map((d) => d.equals(zip))).toEqual([true]);
    const out = mkdtempSync(path.join(dir, 'x-'));
    writeFileSync(path.join(dir, 'typed.dat'), b);
    execFileSync('tnef', ['-f', path.join(dir, 'typed.dat'), '-C', out]);
    expect(readFileSync(path.join(out, 'docs.zip')).equals(zip)).toBe(true);
  });

  it('names an attribute of a level that is neither message nor attachment as damage (Debian tnef aborts on it)', () => {
    const b = Buffer.from(makeTnef([{ title: 'a.txt', data: 'x' }]));
    b[b.indexOf(Buffer.from([0x0f, 0x80, 0x06, 0x00])) - 1] = 3;
    expect(listTnef(b, 10).problem).toMatch(/^attribute 0x6800f of level 3/);
  });

  it("names as damage an attachment's bytes or name in a property of a type Debian's tnef refuses (it aborts), not skipping them", () => {
    const data = Buffer.from(makeTnef([{ longName: 'docs.zip', data: 'PK\x03\x04', dataIn: 'binary' }]));
    data.writeUInt16LE(0x001e, data.indexOf(Buffer.from([0x02, 0x01, 0x01, 0x37])));
    expect(listTnef(data, 10).problem).toBe('property 0x3701 of type 0x1e');
    const name = Buffer.from(makeTnef([{ longName: 'evil.exe', data: 'x' }]));
    name.writeUInt16LE(0x0102, name.indexOf(Buffer.from([0x1f, 0x00, 0x07, 0x37])));
    expect(listTnef(name, 10).problem).toBe('property 0x3707 of type 0x102');
    // PR_ATTACH_METHOD (PT_LONG) renumbered PR_ATTACH_DATA_BIN.
    const fixed = Buffer.from(makeTnef([{ title: 'a.txt', data: 'x' }]));
    fixed.writeUInt16LE(0x3701, fixed.indexOf(Buffer.from([0x03, 0x00, 0x05, 0x37])) + 2);
    expect(listTnef(fixed, 10).problem).toBe('property 0x3701 of type 0x3');
  });

  it("reads past a line end or a few bytes after the last attribute, as Debian's tnef does (it warns of garbage)", () => {
    const stream = makeTnef([
      { title: 'a.txt', data: 'x' },
      { title: 'b.txt', data: 'y' },
    ]);
    for (const tail of ['\r\n', '\0\0\0\0\0\0\0\0']) {
      const listing = listTnef(Buffer.concat([stream, Buffer.from(tail, 'latin1')]), 10);
      expect(listing.problem).toBeUndefined();
      expect(listing.attachments.map((a) => a.names)).toEqual([['a.txt'], ['b.txt']]);
    }
  });

  it('stays linear when one attachment repeats its bytes or names 20,000 times: more copies than any client writes are damage', () => {
    const attr = (id: number, v: Buffer) => {
      const h = Buffer.alloc(9);
      h[0] = 2;
      h.writeUInt32LE(id, 1);
      h.writeUInt32LE(v.length, 5);
      return Buffer.concat([h, v, Buffer.alloc(2)]);
    };
    const head = makeTnef([{ title: 'a.txt', data: 'a' }]);
    const four = (i: number) => {
      const v = Buffer.alloc(4);
      v.writeUInt32LE(i);
      return v;
    };
    // 300 KB each: every value differs from the others, so none is dropped as a duplicate.
    const copies = Buffer.concat([head, ...Array.from({ length: 20000 }, (_, i) => attr(0x0006800f, four(i)))]);
    const titles = Buffer.concat([head, ...Array.from({ length: 20000 }, (_, i) => attr(0x00018010, Buffer.from(`n${i}.txt\0`)))]);
    for (const stream of [copies, titles]) {
      const t0 = process.hrtime.bigint();
      const listing = listTnef(stream, 100);
      expect(Number(process.hrtime.bigint() - t0) / 1e6).toBeLessThan(500);
      expect(listing.problem).toMatch(/^more than \d+ (copies of the bytes|names) of one attachment$/);
      expect(listing.attachments[0].data.length + listing.attachments[0].names.length).toBeLessThan(100);
    }
  });

  it('never throws, whatever bytes are changed or cut (10,000 mutations)', () => {
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let i = 0; i < 10000; i++) {
      const b = Buffer.from(stream.subarray(0, stream.length - rnd(20)));
      for (let k = 0; k < 1 + rnd(4); k++) b[6 + rnd(b.length - 6)] = rnd(256);
      const listing = listTnef(b, 100);
      expect(listing.attachments.length).toBeLessThanOrEqual(100);
    }
  });
});
