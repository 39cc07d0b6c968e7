/**
 * Files uuencoded in text (src/lib/mime/uuencode.ts) against sharutils' uuencode: the bytes
 * come back as they went in, in both encodings; only a head is decoded unless the file is an
 * archive; a file without "end", a line that is no uuencode, and the per-part file cap.
 */
import { detectType } from '../../../src/lib/archive/magic';
import { newNode } from '../../../src/lib/archive/expand';
import { Collector } from '../../../src/lib/mime/collector';
import { MAX_FILES, UuScanner } from '../../../src/lib/mime/uuencode';
import { makeBinHex, makeZip, uuencode } from '../../helpers/archives';

const MiB = 1024 * 1024;

/** The scanner fed `text` in pieces of `step` characters, as the collector feeds complete lines. */
/** `data` yEnc-encoded as yEnc 1.3 describes (single part, 128-character lines). */
function yenc(name: string, data: Buffer): string {
  let out = '';
  let line = '';
  for (const b of data) {
    const c = (b + 42) & 0xff;
    line += c === 0x00 || c === 0x0a || c === 0x0d || c === 0x3d ? `=${String.fromCharCode((c + 64) & 0xff)}` : String.fromCharCode(c);
    if (line.length >= 128) {
      out += `${line}\r\n`;
      line = '';
    }
  }
  return `=ybegin line=128 size=${data.length} name=${name}\r\n${out}${line ? `${line}\r\n` : ''}=yend size=${data.length}\r\n`;
}

function scan(text: string, step = 1000, maxBytes = 32 * MiB) {
  const uu = new UuScanner(maxBytes, (f) => f.types.includes('zip') || f.types.includes('hqx'));
  let carry = '';
  for (let i = 0; i < text.length; i += step) {
    const t = carry + text.slice(i, i + step);
    const cut = t.lastIndexOf('\n');
    carry = cut < 0 ? t : t.slice(cut + 1);
    if (cut >= 0) uu.feed(t.slice(0, cut));
  }
  if (carry) uu.feed(carry);
  uu.end();
  return uu.files;
}

describe('uuencoded files in text', () => {
  const zip = makeZip({ 'invoice.pdf.exe': 'MZ' });

  it.each([false, true])('gives back what uuencode wrote, name and bytes (base64: %s), of a file kept whole', (base64) => {
    const text = `Hello,\r\n\r\nthe file:\r\n\r\n${uuencode('docs.zip', zip, base64).replace(/\n/g, '\r\n')}\r\nregards\r\n`;
    const [f] = scan(text, 7);
    expect(f.name).toBe('docs.zip');
    expect(f.types).toEqual(['zip']);
    expect(Buffer.concat(f.chunks).equals(zip)).toBe(true);
  });

  it('decodes only the head of a file that is no archive, and finds the files after it', () => {
    const big = Buffer.concat([Buffer.from('MZ'), Buffer.alloc(2 * MiB, 1)]);
    const files = scan(`${uuencode('photo.jpg', big)}\n${uuencode('b.txt', 'second file\n')}`, 64 * 1024);
    expect(files.map((f) => [f.name, f.types])).toEqual([
      ['photo.jpg', ['exe', 'exe-ms']],
      ['b.txt', ['txt']],
    ]);
    expect(Buffer.concat(files[0].chunks).length).toBe(0);
    expect(files[0].bytes).toBeLessThan(64 * 1024);
  });

  it('ends a file at the end of the text, or where Thunderbird does: "end", a line starting with white space, another "begin"', () => {
    const whole = uuencode('a.zip', zip);
    const cut = whole.split('\n').slice(0, 3).join('\n');
    const [f] = scan(cut);
    expect(f.name).toBe('a.zip');
    expect(f.types).toEqual(detectType(zip.subarray(0, 90)));
    const [g, h] = scan('begin 644 b.exe\nM1Z\n\tindented text\nM1Z\nbegin 644 c.txt\n#86)C\nEND of it\n');
    expect([g.name, g.bytes, h.name, h.bytes]).toEqual(['b.exe', 45, 'c.txt', 3]);
  });

  it('decodes what Thunderbird decodes: lines whose trailing spaces a gateway stripped (zero bytes), blank lines skipped', () => {
    // An old encoder's spaces for zero bits, stripped at line ends; and a blank line inserted.
    const program = Buffer.concat([Buffer.from('MZ\x90\0\x03'), Buffer.alloc(40), Buffer.from('This program cannot be run in DOS mode.'), Buffer.alloc(200)]);
    const lines = uuencode('readme.txt', program)
      .replace(/`/g, ' ')
      .split('\n')
      .map((l) => l.replace(/ +$/, ''));
    lines.splice(1, 0, '');
    const [f] = scan(lines.join('\r\n'), 5, 1024);
    expect(f.types).toEqual(detectType(program));
    expect(f.types).toContain('exe-ms');
  });

  it('reads yEnc files ("=ybegin line= size= name=", which Thunderbird decodes) and BinHex 4.0 text anywhere in the text, whole', () => {
    const program = Buffer.concat([Buffer.from('MZ\x90\0\x03'), Buffer.alloc(40), Buffer.from('=\r\n\0\t.')]);
    const files = scan(`Hi,\r\n\r\n${yenc('photo.jpg', program)}\r\nand\r\n${makeBinHex('run.exe', 'MZ').toString('latin1')}\r\nbye\r\n`, 9);
    expect(files.map((f) => [f.name, f.types])).toEqual([
      ['photo.jpg', detectType(program)],
      ['', ['hqx']],
    ]);
    expect(Buffer.concat(files[0].chunks).length).toBe(0);
    expect(files[0].bytes).toBe(program.length);
    const hqx = scan(`see\n${makeBinHex('run.exe', 'MZ').toString('latin1')}`, 1000, 1024 * 1024);
    expect(Buffer.concat(hqx[0].chunks).toString('latin1').trim()).toBe(makeBinHex('run.exe', 'MZ').toString('latin1').trim().replace(/\r/g, ''));
  });

  it('drops a whole file over maxBytes, and reads at most MAX_FILES files a part', () => {
    const big = makeZip({ 'a.bin': Buffer.alloc(300 * 1024, 7) }, { store: true });
    const [f] = scan(uuencode('big.zip', big), 4096, 100 * 1024);
    expect([f.tooBig, f.chunks.length]).toEqual([true, 0]);
    const one = uuencode('f.txt', 'x');
    const many = Array.from({ length: MAX_FILES + 5 }, (_, i) => one.replace('f.txt', `f${i}.txt`)).join('\n');
    const uu = new UuScanner(32 * MiB, () => false);
    uu.feed(many);
    uu.end();
    expect(uu.files).toHaveLength(MAX_FILES);
    // The files past the cap are not read, and the scanner says so.
    expect(uu.overflow).toBe(true);
  });

  it('holds the archives of one part to maxBytes together, the one reservation its part makes: the one that would pass it is too big, the files after it still read', () => {
    // Three stored zips of ~60 KB each against 150 KB: two fit, the third would make 180.
    const z = (n: number) => makeZip({ [`m${n}.bin`]: Buffer.alloc(60 * 1024, n) }, { store: true });
    const text = [1, 2, 3].map((n) => uuencode(`a${n}.zip`, z(n))).join('\n');
    const files = scan(`${text}\n${uuencode('after.txt', 'x')}`, 4096, 150 * 1024);
    expect(files.map((f) => [f.name, f.whole, f.tooBig])).toEqual([
      ['a1.zip', true, false],
      ['a2.zip', true, false],
      ['a3.zip', false, true],
      ['after.txt', false, false],
    ]);
    expect(Buffer.concat(files[2].chunks).length).toBe(0);
    const kept = files.filter((f) => f.whole).reduce((n, f) => n + Buffer.concat(f.chunks).length, 0);
    expect(kept).toBeLessThanOrEqual(150 * 1024);
    expect(Buffer.concat(files[1].chunks).equals(z(2))).toBe(true);
  });

  it('once the budget had no room for the part (drop), keeps no later archive of it either: each is busy, with no second wait', () => {
    const uu = new UuScanner(32 * MiB, (f) => f.types.includes('zip'));
    const big = makeZip({ 'm.bin': Buffer.alloc(40 * 1024, 1) }, { store: true });
    // Fed up to past its first 32 KiB (typed a zip, kept whole), without its "end".
    const first = uuencode('first.zip', big).split('\n');
    uu.feed(first.slice(0, 800).join('\n'));
    expect(uu.keepingWhole).toBe(true);
    uu.drop();
    uu.feed(`${first.slice(800).join('\n')}\n${uuencode('second.zip', big)}\n${uuencode('note.txt', 'hello')}`);
    expect(uu.keepingWhole).toBe(false);
    uu.end();
    expect(uu.files.map((f) => [f.name, f.whole, f.busy])).toEqual([
      ['first.zip', false, true],
      ['second.zip', false, true],
      ['note.txt', false, false],
    ]);
  });

  it('holds the small archives, typed only at their end, to maxBytes with the others: the one that would pass it is too big', () => {
    // 60 KB, then two of 8 KB (under HEAD_BYTES: decided when they end) against 70 KB: the third would make 78.
    const z = (n: number, size: number) => makeZip({ [`m${n}.bin`]: Buffer.alloc(size, n) }, { store: true });
    const text = [z(1, 60 * 1024), z(2, 8 * 1024), z(3, 8 * 1024)].map((d, i) => uuencode(`a${i + 1}.zip`, d)).join('\n');
    const files = scan(text, 4096, 70 * 1024);
    expect(files.map((f) => [f.name, f.whole, f.tooBig])).toEqual([
      ['a1.zip', true, false],
      ['a2.zip', true, false],
      ['a3.zip', false, true],
    ]);
    const kept = files.filter((f) => f.whole).reduce((n, f) => n + Buffer.concat(f.chunks).length, 0);
    expect(kept).toBeLessThanOrEqual(70 * 1024);
  });

  it('says it holds memory while an archive that ended within the text fed so far is kept, and gives it up on drop (busy)', () => {
    const uu = new UuScanner(32 * MiB, (f) => f.types.includes('zip'));
    uu.feed(`hello\n${uuencode('small.zip', zip)}\nregards`);
    // The caller reserves memory for the part when this is true: the archive is held whole until the part is walked.
    expect(uu.keepingWhole).toBe(true);
    uu.drop();
    expect(uu.keepingWhole).toBe(false);
    uu.end();
    expect(uu.files.map((f) => [f.name, f.whole, f.busy, Buffer.concat(f.chunks).length])).toEqual([['small.zip', false, true, 0]]);
  });

  it('finds a begin line with a long name cut across two pieces of the part, keeping its extension', () => {
    const name = `${'n'.repeat(3000)}.exe`;
    // Past the first 32 KiB, which the collector reads whole to type the part.
    const text = Buffer.from(`${'hello\r\n'.repeat(8000)}${uuencode(name, 'MZ').replace(/\n/g, '\r\n')}`, 'latin1');
    const node = newNode('2', [], ['text/plain']);
    node.types = ['txt'];
    const c = new Collector(node, '7bit', 32 * MiB);
    // Cut in the middle of the name: the first piece ends 1,500 characters into it.
    const at = text.indexOf('nnn') + 1500;
    c.push(text.subarray(0, at));
    c.push(text.subarray(at));
    c.finish();
    expect(c.uu.files.map((f) => f.name.endsWith('.exe'))).toEqual([true]);
  });
});
