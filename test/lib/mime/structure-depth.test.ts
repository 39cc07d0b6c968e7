/**
 * The walk's cost and shape on deep nesting: delimiter look-ups that do not grow with the
 * depth (counted, not timed), the depth limit past which parts are opaque bytes, and the part
 * cap past which delimiters start no part.
 */
import { MAX_MIME_DEPTH, MAX_MIME_PARTS, MimeWalker, type Part } from '../../../src/lib/mime/structure';

/**
 * `levels` multiparts, each the only part of the one before (the message is the first, at
 * depth 0), a text part in the last, closed innermost first. The text has as many lines that
 * start with "--" but are no delimiter as there are levels: each of them cost a comparison
 * with every open boundary when the walker looked through the open parts one by one.
 */
function nested(levels: number, boundary: (i: number) => string): { contentType: string; body: string } {
  const out: string[] = [`--${boundary(1)}\r\n`];
  for (let i = 2; i <= levels; i++) out.push(`Content-Type: multipart/mixed; boundary="${boundary(i)}"\r\n\r\n--${boundary(i)}\r\n`);
  out.push('\r\nbottom\r\n', '-- signature\r\n'.repeat(levels));
  for (let i = levels; i >= 1; i--) out.push(`--${boundary(i)}--\r\n`);
  return { contentType: `multipart/mixed; boundary="${boundary(1)}"`, body: out.join('') };
}

function walk(body: string, contentType: string | undefined, maxDepth?: number, maxParts?: number): MimeWalker {
  const w = new MimeWalker(contentType, undefined, { ...(maxDepth === undefined ? {} : { maxDepth }), ...(maxParts === undefined ? {} : { maxParts }) });
  const bytes = Buffer.from(body, 'latin1');
  w.push(bytes);
  w.end(bytes.length);
  return w;
}

/** The part reached by following the first child from `root` as far as it goes. */
function deepest(root: Part): Part {
  let p = root;
  while (p.children.length) p = p.children[0];
  return p;
}

/** Delimiter lines: those starting with "--" but for the text's. */
const delimiterLines = (body: string) => body.split('\r\n').filter((l) => l.startsWith('--') && l !== '-- signature').length;

describe('MimeWalker on deep nesting', () => {
  it.each([
    ['distinct boundaries', (i: number) => `b${i}`],
    ['the same boundary at every level', () => 'b'],
  ])('compares each delimiter line with one boundary and other "--" lines with none, so 8,000 levels cost 100 times what 80 do (%s)', (_name, boundary) => {
    const cost = (levels: number) => {
      const { contentType, body } = nested(levels, boundary);
      const w = walk(body, contentType, levels + 1);
      expect(deepest(w.root).depth).toBe(levels);
      expect(w.boundaryComparisons).toBe(delimiterLines(body));
      return w.boundaryComparisons;
    };
    expect(cost(8000)).toBe(100 * cost(80));
  });

  it('compares a delimiter line with at most two boundaries when boundaries differ by "--" (a closing delimiter of one is a delimiter of another)', () => {
    for (const levels of [80, 8000]) {
      const { contentType, body } = nested(levels, (i) => `b${'--'.repeat(i % 3)}`);
      const w = walk(body, contentType, levels + 1);
      expect(deepest(w.root).depth).toBe(levels);
      expect(w.boundaryComparisons).toBeLessThanOrEqual(2 * delimiterLines(body));
    }
  });

  it('closes every level at its own closing delimiter when all levels have one boundary (innermost wins)', () => {
    const { contentType, body } = nested(3, () => 'b');
    const w = walk(body, contentType, 10);
    const second = w.root.children[0];
    const third = second.children[0];
    const text = third.children[0];
    const at = body.indexOf('\r\n--b--');
    expect([text.bodyEnd, third.bodyEnd, second.bodyEnd, w.root.bodyEnd]).toEqual([at, at + 7, at + 14, body.length]);
    expect([w.root, second, third].map((p) => p.boundary)).toEqual([null, null, null]);
  });

  it(`walks ${MAX_MIME_DEPTH} levels by default; the multipart at that depth is opaque, its inner boundaries and parts bytes of its body`, () => {
    const { contentType, body } = nested(8000, (i) => `b${i}`);
    const w = walk(body, contentType);
    const last = deepest(w.root);
    // Level n is at depth n - 1.
    expect([last.depth, last.opaque, last.contentType, last.boundary, last.children.length]).toEqual([MAX_MIME_DEPTH, true, 'multipart/mixed', `b${MAX_MIME_DEPTH + 1}`, 0]);
    // Its body runs from after its header to the line ending before its parent's closing delimiter.
    const header = `Content-Type: multipart/mixed; boundary="b${MAX_MIME_DEPTH + 1}"\r\n\r\n`;
    expect(last.bodyStart).toBe(body.indexOf(header) + header.length);
    expect(body.slice(last.bodyEnd).startsWith(`\r\n--b${MAX_MIME_DEPTH}--\r\n`)).toBe(true);
  });

  it('leaves a message/rfc822 at the limit opaque, not walked into, its header parsed', () => {
    const inner = 'Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nGr\xfc\xdfe\r\n';
    const body = `Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n\r\n${inner}`;
    const w = walk(body, 'message/rfc822', 1);
    const part = w.root.children[0];
    expect([part.depth, part.contentType, part.transferEncoding, part.opaque, part.children.length, part.eightBit]).toEqual([1, 'message/rfc822', '8bit', true, 0, true]);
    expect(body.slice(part.bodyStart, part.bodyEnd)).toBe(inner);
  });

  it("ends an opaque multipart at its parent's next delimiter, as any other part", () => {
    const body = '--o\r\nContent-Type: multipart/mixed; boundary=i\r\n\r\n--i\r\n\r\nin i\r\n--o\r\n\r\nsecond\r\n--o--\r\n';
    const w = walk(body, 'multipart/mixed; boundary=o', 1);
    const [first, second] = w.root.children;
    expect([first.opaque, first.children.length]).toEqual([true, 0]);
    expect(body.slice(first.bodyStart, first.bodyEnd)).toBe('--i\r\n\r\nin i');
    expect(body.slice(second.bodyStart, second.bodyEnd)).toBe('second');
  });
});

describe('MimeWalker on many parts', () => {
  const many = (n: number) => `${'--b\r\nContent-Type: text/plain\r\n\r\nx\r\n'.repeat(n)}--b--\r\n`;

  it('makes 10,000 parts of a 10,000-part message, and no more than MAX_MIME_PARTS of a larger one', () => {
    expect(walk(many(10_000), 'multipart/mixed; boundary="b"').root.children).toHaveLength(10_000);
    const w = walk(many(MAX_MIME_PARTS + 50), 'multipart/mixed; boundary="b"');
    expect(w.root.children).toHaveLength(MAX_MIME_PARTS);
    expect(w.root.ambiguous).toBe(`more than ${MAX_MIME_PARTS} MIME parts: the rest is not walked`);
  });

  it('leaves what follows the cap in the last part, made opaque, and still closes the multipart', () => {
    const body = many(5);
    const w = walk(body, 'multipart/mixed; boundary="b"', undefined, 3);
    const last = w.root.children[2];
    expect(w.root.children).toHaveLength(3);
    expect(last.opaque).toBe(true);
    expect(body.slice(last.bodyStart, last.bodyEnd)).toBe('x\r\n--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b\r\nContent-Type: text/plain\r\n\r\nx');
  });
});
