/**
 * The tar lister on archives GNU tar made: pax and GNU long names, directories, and a damaged
 * header that ends the listing with a problem.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { listTar, TarScanner } from '../../../src/lib/archive/tar';
import { makeTar } from '../../helpers/archives';

const long = `${'d'.repeat(120)}/${'n'.repeat(130)}.exe`;

function gnuTar(): Buffer {
  const dir = mkdtempSync(path.join(tmpdir(), 'postseal-tar-'));
  try {
    mkdirSync(path.join(dir, path.dirname(long)), { recursive: true });
    writeFileSync(path.join(dir, long), 'x');
    execFileSync('tar', ['-cf', 'out.tar', '--format=gnu', long], { cwd: dir });
    return readFileSync(path.join(dir, 'out.tar'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A ustar header with a right checksum. */
function header(name: string, size: number, type: string): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 'latin1');
  h.write('0000644\0', 100, 'latin1');
  h.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  h.write(type, 156, 'latin1');
  h.write('ustar\x0000', 257, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const c of h) sum += c;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return h;
}

const block = (data: Buffer) => Buffer.concat([data, Buffer.alloc((512 - (data.length % 512)) % 512)]);

describe('tar listing', () => {
  it('reads long names from pax records', () => {
    const t = makeTar({ [long]: 'x', 'short.txt': 'hello' });
    expect(
      listTar(t, 10)
        .entries.filter((e) => e.file)
        .map((e) => [e.name, e.data.toString()]),
    ).toEqual([
      [long, 'x'],
      ['short.txt', 'hello'],
    ]);
  });

  it('reads long names from GNU L members', () => {
    expect(listTar(gnuTar(), 10).entries.map((e) => e.name)).toEqual([long]);
  });

  it('stops at a header whose checksum is wrong, keeping the members before it', () => {
    const t = Buffer.from(makeTar({ 'a.txt': 'a', 'b.txt': 'b' }));
    const second = t.indexOf(Buffer.from('b.txt'), 512);
    const headerStart = second - (second % 512);
    t[headerStart + 100] ^= 0xff;
    const r = listTar(t, 10);
    expect(r.problem).toMatch(/bad header checksum/);
    expect(r.entries.map((e) => e.name)).toContain('a.txt');
    expect(r.entries.map((e) => e.name)).not.toContain('b.txt');
  });

  it('stops at maxEntries', () => {
    const t = makeTar(Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`f${i}`, 'x'])));
    expect(listTar(t, 3)).toMatchObject({ truncated: true });
  });

  it('reads a pax path after a record with multibyte characters (record lengths are bytes)', () => {
    // What GNU tar reads as evil.js: a comment of 17 two-byte characters, then the path.
    const pax = Buffer.from(`46 comment=${'\u00e9'.repeat(17)}\n16 path=evil.js\n`, 'utf8');
    const t = Buffer.concat([header('PaxHeader', pax.length, 'x'), block(pax), header('a.txt', 8, '0'), block(Buffer.from('var a=1;')), Buffer.alloc(1024)]);
    const r = listTar(t, 10);
    expect(r.problem).toBeUndefined();
    expect(r.entries.map((e) => e.name)).toEqual(['evil.js']);
    const dir = mkdtempSync(path.join(tmpdir(), 'postseal-tar-'));
    try {
      writeFileSync(path.join(dir, 'x.tar'), t);
      expect(execFileSync('tar', ['-tf', 'x.tar'], { cwd: dir }).toString()).toBe('evil.js\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('ends the listing with a problem at a pax record whose length does not fit', () => {
    const t = Buffer.from(makeTar({ [long]: 'x' }));
    const rec = t.indexOf(Buffer.from(' path='));
    t.write('9', rec - 1, 'latin1');
    const h = t.subarray(0, 512);
    h.fill(0x20, 148, 156);
    let sum = 0;
    for (const c of h) sum += c;
    h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    expect(listTar(t, 10).problem).toBe('bad pax record');
  });
});

describe('tar scanning as it streams', () => {
  const scan = (t: Buffer, slice: number, maxEntries = 10, headBytes = 4) => {
    const s = new TarScanner(maxEntries, headBytes);
    for (let at = 0; at < t.length && !s.done; at += slice) s.push(t.subarray(at, at + slice));
    return { entries: s.finish().map((e) => [e.name, e.head.toString('latin1')]), problem: s.problem, truncated: s.truncated };
  };

  it('lists what listTar lists, with each member head, in slices of any size (pax and GNU long names)', () => {
    const t = makeTar({ [long]: 'xyz', 'big.bin': Buffer.alloc(5000, 0x61), 'short.txt': 'hello', 'empty.txt': '' });
    const want = listTar(t, 10).entries.map((e) => [e.name, e.data.subarray(0, 4).toString('latin1')]);
    for (const slice of [1, 7, 511, 512, 513, 4096, t.length]) expect(scan(t, slice)).toEqual({ entries: want, problem: undefined, truncated: false });
    expect(scan(gnuTar(), 100).entries).toEqual([[long, 'x']]);
  });

  it('keeps all of the members its keepWhole chooses, asked once with the head and the size, in slices of any size', () => {
    const t = makeTar({ 'a.zip': Buffer.alloc(5000, 0x61), 'b.bin': Buffer.alloc(3000, 0x62), 'c.zip': 'tiny' });
    for (const slice of [1, 7, 512, 513, 4096, t.length]) {
      const asked: string[] = [];
      const s = new TarScanner(10, 4, (name, head, size) => {
        asked.push(`${name} ${head.toString('latin1')} ${size}`);
        return name.endsWith('.zip');
      });
      for (let at = 0; at < t.length; at += slice) s.push(t.subarray(at, at + slice));
      expect(asked).toEqual(['a.zip aaaa 5000', 'b.bin bbbb 3000']);
      expect(s.finish().map((e) => [e.name, e.head.length, e.whole])).toEqual([
        ['a.zip', 5000, true],
        ['b.bin', 4, false],
        ['c.zip', 4, true],
      ]);
    }
  });

  it('stops at damage or maxEntries, keeping the members before, and gives the head of a member cut short', () => {
    const t = Buffer.from(makeTar({ 'a.txt': 'a', 'b.txt': 'b' }));
    const second = t.indexOf(Buffer.from('b.txt'), 512);
    t[second - (second % 512) + 100] ^= 0xff;
    expect(scan(t, 300)).toEqual({ entries: [['a.txt', 'a']], problem: 'bad header checksum', truncated: false });
    expect(scan(makeTar({ a: 'x', b: 'y', c: 'z' }), 512, 2)).toMatchObject({
      entries: [
        ['a', 'x'],
        ['b', 'y'],
      ],
      truncated: true,
    });
    const cut = makeTar({ 'pad.bin': Buffer.alloc(2000), 'run.exe': 'MZ-and-more' });
    expect(scan(cut.subarray(0, cut.indexOf(Buffer.from('MZ-and')) + 3), 1000).entries).toEqual([
      ['pad.bin', '\0\0\0\0'],
      ['run.exe', 'MZ-'],
    ]);
  });
});
