/**
 * The seven-bit plan on walked part trees: deep trees without recursion, parts past the depth
 * limit never changed, and, over random MIME trees (fast-check), a plan that once applied
 * leaves the message 7-bit wherever it says it could, explains every 8-bit part it left, and
 * keeps every byte outside its edits.
 */
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { MimeWalker, type Part } from '../../src/lib/mime/structure';
import { applyEdits } from '../../src/lib/mime/splice';
import { planSevenBit, type SevenBitPlan } from '../../src/stages/seven-bit/plan';
import { mimeTree, partsWithPaths, serialize } from '../lib/mime/mime-arbitrary';
import { readAll } from '../helpers/streams';

function walk(body: Buffer, contentType: string | undefined, transferEncoding: string | undefined, maxDepth: number): Part {
  const w = new MimeWalker(contentType, transferEncoding, { maxDepth });
  w.push(body);
  w.end(body.length);
  return w.root;
}

const chunked = (body: Buffer, size: number) => Readable.from(Array.from({ length: Math.ceil(body.length / size) }, (_, i) => body.subarray(i * size, (i + 1) * size)));

/** What applyEdits must make: the bytes between edits as they were, each edit's own output in its place. */
async function spliced(body: Buffer, plan: SevenBitPlan): Promise<Buffer> {
  const out: Buffer[] = [];
  let pos = 0;
  for (const edit of plan.edits) {
    out.push(body.subarray(pos, edit.start), await readAll(Readable.from(edit.replace(Readable.from([body.subarray(edit.start, edit.end)])))));
    pos = edit.end;
  }
  out.push(body.subarray(pos));
  return Buffer.concat(out);
}

const isDirty = (p: Part) => p.eightBit || p.nul || p.longLine;
const decodeQuotedPrintable = (s: string) =>
  Buffer.from(
    s.replace(/=\r\n/g, '').replace(/=([0-9A-F]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16))),
    'latin1',
  );

describe('planSevenBit', () => {
  it('plans a part tree 8,000 levels deep without recursion: the 8-bit text at the bottom re-encoded, every level relabelled', () => {
    const levels = 8000;
    const head = Array.from({ length: levels }, (_, i) => `Content-Type: multipart/mixed; boundary=b${i}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n--b${i}\r\n`).join('');
    const tail = Array.from({ length: levels }, (_, i) => `--b${levels - 1 - i}--\r\n`).join('');
    const body = Buffer.from(`--top\r\n${head}Content-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\xfc\xdfe\r\n${tail}--top--\r\n`, 'latin1');
    const plan = planSevenBit(walk(body, 'multipart/mixed; boundary=top', undefined, levels + 2));
    expect(plan.counts).toEqual({ '7bit': levels, 'quoted-printable': 1, base64: 0 });
    expect(plan.unconvertible).toEqual([]);
  });

  it('never re-encodes a message/rfc822 past the depth limit as if it were a leaf: no edit inside it, a finding naming it', async () => {
    const deep = `${'Content-Type: message/rfc822\r\n\r\n'.repeat(5)}Content-Type: text/plain\r\n\r\nGr\xfc\xdfe\r\n`;
    const body = Buffer.from(`--top\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n\r\n${deep}--top--\r\n`, 'latin1');
    const plan = planSevenBit(walk(body, 'multipart/mixed; boundary=top', undefined, 3));
    expect(plan.edits).toEqual([]);
    expect(plan.topEncoding).toBeNull();
    expect(plan.unconvertible).toEqual(['body.1.1.1: MIME nesting deeper than 3; left as it is']);
  });

  it('leaves a 7-bit part past the depth limit labelled 8bit as it is, and its containers labelled as they were, with a finding', () => {
    const body = Buffer.from('--top\r\nContent-Type: multipart/mixed; boundary=in\r\nContent-Transfer-Encoding: 8bit\r\n\r\n--in\r\n\r\nascii\r\n--in--\r\n--top--\r\n', 'latin1');
    const plan = planSevenBit(walk(body, 'multipart/mixed; boundary=top', '8bit', 1));
    expect(plan.edits).toEqual([]);
    expect(plan.topEncoding).toBeNull();
    expect(plan.unconvertible).toEqual(['body.1: MIME nesting deeper than 1; left as it is']);
  });
});

describe('planSevenBit on random MIME trees', () => {
  const caseArb = fc.record({
    tree: mimeTree,
    maxDepth: fc.integer({ min: 1, max: 6 }),
    eols: fc.array(fc.constantFrom('\r\n' as const, '\n' as const), { minLength: 1, maxLength: 5 }),
    chunk: fc.integer({ min: 1, max: 300 }),
  });

  it('applied, leaves every part 7-bit but those it reports, keeps every byte outside its edits, and changes nothing past the depth limit', async () => {
    await fc.assert(
      fc.asyncProperty(caseArb, async ({ tree, maxDepth, eols, chunk }) => {
        const c = serialize(tree, maxDepth, eols);
        const root = walk(c.body, c.contentType, c.transferEncoding, maxDepth);
        const plan = planSevenBit(root);

        // Edits in order, apart, none touching a part that was not walked into.
        for (const [i, e] of plan.edits.entries()) expect(e.start).toBeGreaterThanOrEqual(i ? plan.edits[i - 1].end : 0);
        for (const [, p] of partsWithPaths(root).filter(([, p]) => p.opaque)) {
          const from = Math.min(p.headerEnd, p.transferEncodingField?.start ?? p.headerEnd);
          for (const e of plan.edits) expect(e.end <= from || e.start >= p.bodyEnd || (e.start === e.end && e.start < from)).toBe(true);
        }
        const out = await readAll(Readable.from(applyEdits(chunked(c.body, chunk), plan.edits)));
        expect(out.equals(await spliced(c.body, plan))).toBe(true);

        // The result has the same parts; each still 8-bit is one the plan reported.
        const before = partsWithPaths(root);
        const after = partsWithPaths(walk(out, c.contentType, plan.topEncoding ?? c.transferEncoding, maxDepth));
        expect(after.map(([path, p]) => [path, p.contentType, p.opaque, p.children.length])).toEqual(before.map(([path, p]) => [path, p.contentType, p.opaque, p.children.length]));
        const reported = (path: string) => plan.unconvertible.some((u) => u.startsWith(`${path}: `)) || plan.signed.some((s) => path === s || path.startsWith(`${s}.`));
        for (const [path, p] of after) if (isDirty(p)) expect([path, reported(path)]).toEqual([path, true]);
        if (!plan.unconvertible.length && !plan.signed.length) {
          expect(after.filter(([, p]) => ['8bit', 'binary'].includes(p.transferEncoding)).map(([path]) => path)).toEqual([]);
        }

        // Re-encoded leaves decode to what they held (quoted-printable with CRLF line ends).
        after.forEach(([path, p], i) => {
          const was = before[i][1];
          if (p.transferEncoding === was.transferEncoding || !isDirty(was)) return;
          const original = c.body.subarray(was.bodyStart, was.bodyEnd);
          const encoded = out.subarray(p.bodyStart, p.bodyEnd).toString('latin1');
          const decoded = p.transferEncoding === 'base64' ? Buffer.from(encoded, 'base64') : decodeQuotedPrintable(encoded);
          const expected = p.transferEncoding === 'base64' ? original : Buffer.from(original.toString('latin1').replace(/\r?\n/g, '\r\n'), 'latin1');
          expect([path, decoded.equals(expected)]).toEqual([path, true]);
        });
      }),
      { numRuns: 200 },
    );
  });
});
