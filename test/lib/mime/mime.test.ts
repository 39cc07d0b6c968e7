import { LineReader, type Line, type PlainRun } from '../../../src/lib/mime/lines';
import { encodeBase64, encodeQuotedPrintable } from '../../../src/lib/mime/encoders';
import { applyEdits, replaceWith } from '../../../src/lib/mime/splice';
import { MimeWalker, type Part } from '../../../src/lib/mime/structure';
import snapshot from './walk-snapshot.json';
import { describeParts, seeded, walkCorpus, type WalkCase } from './walk-corpus';

async function* chunks(data: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

async function collect(source: AsyncIterable<Buffer>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of source) out.push(c);
  return Buffer.concat(out);
}

/** What a reader reports; `runs` says whether the sink takes plain runs. */
function linesOf(data: Buffer, size: number, keepBytes = 1000, runs = false): (Line | PlainRun)[] {
  const out: (Line | PlainRun)[] = [];
  const r = new LineReader({ line: (l) => out.push(l), takesPlainRuns: () => runs, plain: (run) => out.push(run) }, keepBytes);
  for (let i = 0; i < data.length; i += size) r.push(data.subarray(i, i + size));
  r.end();
  return out;
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
      expect((lines as Line[]).map((l) => [l.start, l.length, l.eolLength, l.head.toString('latin1'), l.eightBit])).toEqual([
        [0, 2, 2, 'ab', false],
        [4, 2, 1, 'c\xe4', true],
        [7, 9, 2, 'long', false],
        [18, 4, 0, 'last', false],
      ]);
    }
  });

  it('gives lines that cannot be a delimiter as runs when the sink takes them, and each line that starts with "--" alone', () => {
    const data = Buffer.from(`a\r\n\xe4\r\n--b\r\n${'x'.repeat(999)}\n--\nlast\r`, 'latin1');
    const reported = (size: number) => {
      const out: unknown[][] = [];
      for (const item of linesOf(data, size, 1000, true)) {
        const last = out[out.length - 1];
        if ('head' in item) out.push(['line', item.start, item.length, item.eolLength]);
        // Chunk ends split runs; what counts is what the runs between two lines add up to.
        else if (last?.[0] === 'run') out[out.length - 1] = ['run', last[1] || item.eightBit, last[2] || item.nul, last[3] || item.longLine, item.eolLength || last[4]];
        else out.push(['run', item.eightBit, item.nul, item.longLine, item.eolLength]);
      }
      return out;
    };
    for (const size of [1, 2, 3, 998, 1000, data.length]) {
      expect(reported(size)).toEqual([
        ['run', true, false, false, 2],
        ['line', 6, 3, 2],
        ['run', false, false, true, 1],
        ['line', 1011, 2, 1],
        ['run', false, false, false, 0],
      ]);
    }
  });
});

describe('MimeWalker', () => {
  const body =
    'preamble\r\n--b\r\nContent-Type: text/plain\r\n\r\nascii\r\n--b\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: 8bit\r\n\r\n<p>\xe4</p>\r\n--b--\r\nepilogue\r\n';

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

  it('calls a part ambiguous for a line Thunderbird or clamd reads as a delimiter and RFC 2046 does not, wherever the chunks split it', () => {
    const lines = ['--B\r\n', '--b\r\r\n', '--b\f\r\n', '--b\rContent-Type: text/plain\r\n', 'text\r--b\r\n', 'text\r--b--\r\n', '\r--b\r\n'];
    for (const line of lines) {
      for (const size of [1, 2, 3, 5, 7, 1000]) {
        const root = walk(`--b\r\n\r\nhello\r\n${line}\r\nmore\r\n--b--\r\n`, 'multipart/mixed; boundary=b', undefined, size);
        expect([line, size, root.children[0].ambiguous]).toEqual([line, size, expect.stringMatching(/boundary/)]);
      }
    }
    for (const line of ['--bb\r\n', 'a\r--x\r\n', '-- \r\n', 'x\r-\r\n'])
      expect(walk(`--b\r\n\r\nhello\r\n${line}--b--\r\n`, 'multipart/mixed; boundary=b', undefined, 3).children[0].ambiguous).toBeNull();
  });

  it('flags NUL and lines over 998 octets in a 7-bit part', () => {
    expect(walk(`${'x'.repeat(999)}\r\n`).longLine).toBe(true);
    expect(walk('a\0b\r\n').nul).toBe(true);
  });
});

describe('MimeWalker against the line-by-line walker (walk-snapshot.json)', () => {
  const corpus = walkCorpus();
  /** Every corpus body walked in the chunks `cuts` gives; the snapshot's shape, so a diff names the case. */
  const walkAll = (cuts: (c: WalkCase) => number[]) =>
    Object.fromEntries(
      corpus.map((c) => {
        const w = new MimeWalker(c.contentType, c.transferEncoding);
        let pos = 0;
        for (const cut of [...cuts(c), c.body.length]) {
          w.push(c.body.subarray(pos, cut));
          pos = cut;
        }
        w.end(c.body.length);
        return [c.name, describeParts(w.root)];
      }),
    );
  const every = (size: number) => (c: WalkCase) => Array.from({ length: Math.ceil(c.body.length / size) }, (_, i) => i * size).slice(1);
  /** Cuts `offset` bytes after each match of `pattern`, the body otherwise whole. */
  const around = (pattern: string, offset: number) => (c: WalkCase) => {
    const cuts: number[] = [];
    for (let at = c.body.indexOf(pattern); at >= 0; at = c.body.indexOf(pattern, at + 1)) cuts.push(at + offset);
    return cuts;
  };

  it('has a snapshot entry for every corpus body', () => {
    expect(corpus.map((c) => c.name).sort()).toEqual(Object.keys(snapshot).sort());
  });

  it('walks every body as it did when each comes whole', () => {
    expect(walkAll(() => [])).toEqual(snapshot);
  });

  it('walks every body as it did when it comes one byte at a time', () => {
    expect(walkAll(every(1))).toEqual(snapshot);
  });

  it('walks every body as it did in chunks of 2, 3, 997, 998, 999 and 1000 bytes', () => {
    for (const size of [2, 3, 997, 998, 999, 1000]) expect(walkAll(every(size))).toEqual(snapshot);
  });

  it('walks every body as it did when chunks end inside a line end and its "--", between a CR and its LF, or just after a LF', () => {
    for (const cuts of [around('\n--', 1), around('\n--', 2), around('\n--', 3), around('\r\n', 1), around('\n', 1)]) expect(walkAll(cuts)).toEqual(snapshot);
  });

  it('walks every body as it did in random chunks', () => {
    const rand = seeded(998);
    for (let round = 0; round < 8; round++) {
      const cuts = (c: WalkCase) => [...new Set(Array.from({ length: 1 + Math.floor(rand() * 40) }, () => Math.floor(rand() * c.body.length)))].sort((a, b) => a - b);
      expect(walkAll(cuts)).toEqual(snapshot);
    }
  });
});

/** RFC 2045 6.7 decoding, strict enough for output we wrote. */
const decodeQp = (qp: Buffer) =>
  qp
    .toString('latin1')
    .replace(/=\r\n/g, '')
    .replace(/=([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));

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
      const out = await collect(
        applyEdits(chunks(data, size), [
          { start: 2, end: 4, replace: replaceWith(Buffer.from('--')) },
          { start: 10, end: 13, replace: upper },
          { start: 16, end: 16, replace: replaceWith(Buffer.from('!')) },
        ]),
      );
      expect(out.toString()).toBe('01--456789ABCdef!');
    }
  });

  it('a reader that stops early closes the source (a spool file is not left open)', async () => {
    let closed = false;
    const source = (async function* () {
      try {
        yield* chunks(Buffer.from('0123456789abcdef'), 4);
      } finally {
        closed = true;
      }
    })();
    for await (const c of applyEdits(source, [{ start: 8, end: 10, replace: replaceWith(Buffer.from('--')) }])) {
      expect(c.toString()).toBe('0123');
      break;
    }
    expect(closed).toBe(true);
  });
});
