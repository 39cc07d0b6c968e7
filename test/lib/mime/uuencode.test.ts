/**
 * Files uuencoded in text (src/lib/mime/uuencode.ts) against sharutils' uuencode: the bytes
 * come back as they went in, in both encodings; only a head is decoded unless the file is an
 * archive; a file without "end", a line that is no uuencode, and the per-part file cap.
 */
import { detectType } from '../../../src/lib/archive/magic';
import { MAX_FILES, UuScanner } from '../../../src/lib/mime/uuencode';
import { makeZip, uuencode } from '../../helpers/archives';

const MiB = 1024 * 1024;

/** The scanner fed `text` in pieces of `step` characters, as the collector feeds complete lines. */
function scan(text: string, step = 1000, maxBytes = 32 * MiB) {
  const uu = new UuScanner(maxBytes, (f) => f.types.includes('zip'));
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

  it('ends a file at the end of the text or at a line that is no uuencode, keeping what it decoded', () => {
    const whole = uuencode('a.zip', zip);
    const cut = whole.split('\n').slice(0, 3).join('\n');
    const [f] = scan(cut);
    expect(f.name).toBe('a.zip');
    expect(f.types).toEqual(detectType(zip.subarray(0, 90)));
    const [g] = scan(`begin 644 b.exe\nM1Z\nnot uuencode\n`);
    expect([g.name, g.bytes]).toEqual(['b.exe', 0]);
  });

  it('drops a whole file over maxBytes, and reads at most MAX_FILES files a part', () => {
    const big = makeZip({ 'a.bin': Buffer.alloc(300 * 1024, 7) }, { store: true });
    const [f] = scan(uuencode('big.zip', big), 4096, 100 * 1024);
    expect([f.tooBig, f.chunks.length]).toEqual([true, 0]);
    const one = uuencode('f.txt', 'x');
    const many = Array.from({ length: MAX_FILES + 5 }, (_, i) => one.replace('f.txt', `f${i}.txt`)).join('\n');
    expect(scan(many)).toHaveLength(MAX_FILES);
  });
});
