import { LineReader, type Line } from '../../../src/lib/mime/lines';
import { encodeBase64, encodeQuotedPrintable } from '../../../src/lib/mime/encoders';
import { applyEdits, replaceWith } from '../../../src/lib/mime/splice';
import { MimeWalker, type Part } from '../../../src/lib/mime/structure';

async function* chunks(data: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

async function collect(source: AsyncIterable<Buffer>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of source) out.push(c);
  return Buffer.concat(out);
}

function linesOf(data: Buffer, size: number, keepBytes = 1000): Line[] {
  const lines: Line[] = [];
  const r = new LineReader((l) => lines.push(l), keepBytes);
  for (let i = 0; i < data.length; i += size) r.push(data.subarray(i, i + size));
  r.end();
  return lines;
}

function walk(body: string | Buffer, contentType?: string, cte?: string, size = 7): Part {
  const data = Buffer.isBuffer(body) ? body : Buffer.from(body, 'latin1');
  const w = new MimeWalker(contentType, cte);
  for (let i = 0; i < data.length; i += size) w.push(data.subarray(i, i + size));
  w.end(data.length);
  return w.root;
}

describe('LineReader', () => {
  it('reports offsets, line endings and 8-bit content the same for any chunking, keeping only a bounded head', () => {
    const data = Buffer.from('ab\r\nc\xe4\nlong-line\r\nlast', 'latin1');
    for (const size of [1, 2, 3, 100]) {
      const lines = linesOf(data, size, 4);
      expect(lines.map((l) => [l.start, l.length, l.eolLength, l.head.toString('latin1'), l.eightBit])).toEqual([
        [0, 2, 2, 'ab', false],
        [4, 2, 1, 'c\xe4', true],
        [7, 9, 2, 'long', false],
        [18, 4, 0, 'last', false],
      ]);
    }
  });
});

describe('MimeWalker', () => {
  const body = 'preamble\r\n--b\r\nContent-Type: text/plain\r\n\r\nascii\r\n--b\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: 8bit\r\n\r\n<p>\xe4</p>\r\n--b--\r\nepilogue\r\n';

  it('finds each part, its Content-Transfer-Encoding field and its body range, the CRLF before a boundary excluded', () => {
    const root = walk(body, 'multipart/alternative; boundary=b');
    const [plain, html] = root.children;
    expect(body.slice(plain.bodyStart, plain.bodyEnd)).toBe('ascii');
    expect(body.slice(html.bodyStart, html.bodyEnd)).toBe('<p>\xe4</p>');
    expect(body.slice(html.transferEncodingField!.start, html.transferEncodingField!.end)).toBe('Content-Transfer-Encoding: 8bit\r\n');
    expect([plain.eightBit, html.eightBit, html.contentType, html.transferEncoding]).toEqual([false, true, 'text/html', '8bit']);
    expect(body.slice(plain.headerEnd, plain.bodyStart)).toBe('\r\n');
  });

  it('treats a boundary of an outer multipart inside an unterminated inner one as the end of both', () => {
    const nested = '--o\r\nContent-Type: multipart/mixed; boundary=i\r\n\r\n--i\r\n\r\ninner\r\n--o\r\n\r\nsecond\r\n--o--\r\n';
    const root = walk(nested, 'multipart/mixed; boundary=o', undefined, 5);
    expect(root.children.map((c) => c.contentType)).toEqual(['multipart/mixed', 'text/plain']);
    const inner = root.children[0].children[0];
    expect(nested.slice(inner.bodyStart, inner.bodyEnd)).toBe('inner');
    expect(nested.slice(root.children[1].bodyStart, root.children[1].bodyEnd)).toBe('second');
  });

  it('does not take a line that only starts like the boundary for the boundary', () => {
    const root = walk('--b\r\n\r\n--bb\r\n--b-x\r\n--b--\r\n', 'multipart/mixed; boundary=b');
    expect(root.children).toHaveLength(1);
  });

  it('flags NUL and lines over 998 octets in a 7-bit part', () => {
    expect(walk(`${'x'.repeat(999)}\r\n`).longLine).toBe(true);
    expect(walk('a\0b\r\n').nul).toBe(true);
  });
});

/** RFC 2045 6.7 decoding, strict enough for output we wrote. */
const decodeQp = (qp: Buffer) => qp.toString('latin1').replace(/=\r\n/g, '').replace(/=([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));

describe('encoders', () => {
  const text = Buffer.from(`Gr\xfc\xdfe  \r\n= sign\tand tab\t\r\nbare\rCR\n${'long line '.repeat(20)}\r\nend `, 'latin1');

  it('quoted-printable output is 7-bit, at most 76 columns, and decodes to the text with CRLF line ends', async () => {
    for (const size of [1, 3, 64, 4096]) {
      const out = await collect(encodeQuotedPrintable(chunks(text, size)));
      const lines = out.toString('latin1').split('\r\n');
      expect(lines.every((l) => l.length <= 76 && /^[\t\x20-\x7e]*$/.test(l))).toBe(true);
      expect(lines.every((l) => !/[ \t]$/.test(l))).toBe(true);
      expect(decodeQp(out)).toBe(text.toString('latin1').replace(/(?<!\r)\n/g, '\r\n'));
    }
  });

  it('base64 output has 76-column lines and decodes to the input, however it was chunked', async () => {
    const data = Buffer.from([...Array(1000).keys()].map((i) => (i * 37) & 0xff));
    for (const size of [1, 56, 57, 58, 1000]) {
      const out = (await collect(encodeBase64(chunks(data, size)))).toString('latin1');
      expect(out.split('\r\n').every((l) => l.length <= 76)).toBe(true);
      expect(Buffer.from(out.replace(/\r\n/g, ''), 'base64').equals(data)).toBe(true);
    }
  });
});

describe('applyEdits', () => {
  it('replaces the chosen ranges, copies the rest and passes each edit its original bytes', async () => {
    const data = Buffer.from('0123456789abcdef');
    const upper = async function* (original: AsyncIterable<Buffer>) {
      for await (const c of original) yield Buffer.from(c.toString().toUpperCase());
    };
    for (const size of [1, 3, 16]) {
      const out = await collect(applyEdits(chunks(data, size), [
        { start: 2, end: 4, replace: replaceWith(Buffer.from('--')) },
        { start: 10, end: 13, replace: upper },
        { start: 16, end: 16, replace: replaceWith(Buffer.from('!')) },
      ]));
      expect(out.toString()).toBe('01--456789ABCdef!');
    }
  });
});
