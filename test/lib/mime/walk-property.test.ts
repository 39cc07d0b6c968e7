/**
 * Properties of the MIME walk over random trees (mime-arbitrary.ts): the part tree is the one
 * written, up to the depth limit, offset for offset, however the body is cut into chunks.
 */
import fc from 'fast-check';
import { MimeWalker } from '../../../src/lib/mime/structure';
import { describe as describeTree, mimeTree, serialize, type Serialized } from './mime-arbitrary';

const RUNS = 300;
const eolsArb = fc.oneof(fc.constant(['\r\n'] as const), fc.constant(['\n'] as const), fc.array(fc.constantFrom('\r\n' as const, '\n' as const), { minLength: 1, maxLength: 7 }));
const caseArb = fc
  .record({ tree: mimeTree, maxDepth: fc.integer({ min: 1, max: 6 }), eols: eolsArb })
  .map(({ tree, maxDepth, eols }) => ({ maxDepth, ...serialize(tree, maxDepth, eols) }));

function walk(c: Serialized & { maxDepth: number }, cuts: number[] = []) {
  const w = new MimeWalker(c.contentType, c.transferEncoding, { maxDepth: c.maxDepth });
  let pos = 0;
  for (const cut of [...cuts.filter((x) => x < c.body.length).sort((a, b) => a - b), c.body.length]) {
    w.push(c.body.subarray(pos, cut));
    pos = cut;
  }
  w.end(c.body.length);
  return w.root;
}

describe('MimeWalker on random MIME trees', () => {
  it('finds the tree that was written, up to the depth limit, offset for offset', () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        expect(describeTree(walk(c))).toEqual(c.expected);
      }),
      { numRuns: RUNS },
    );
  });

  it('finds the same tree however the body is cut into chunks', () => {
    fc.assert(
      fc.property(
        caseArb.chain((c) => fc.record({ c: fc.constant(c), cuts: fc.array(fc.nat({ max: Math.max(0, c.body.length) }), { maxLength: 40 }) })),
        ({ c, cuts }) => {
          expect(describeTree(walk(c, cuts))).toEqual(describeTree(walk(c)));
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('keeps offsets consistent: every body inside its parent body, siblings in order, none past the end', () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        const root = walk(c);
        expect([root.bodyStart, root.bodyEnd]).toEqual([0, c.body.length]);
        for (const stack = [root]; stack.length; ) {
          const p = stack.pop()!;
          expect(p.bodyStart).toBeLessThanOrEqual(p.bodyEnd);
          expect(p.depth).toBeLessThanOrEqual(c.maxDepth);
          if (p.opaque) expect(p.children).toEqual([]);
          let previousEnd = p.bodyStart;
          for (const child of p.children) {
            expect(child.headerEnd).toBeGreaterThanOrEqual(previousEnd);
            expect(child.bodyEnd).toBeLessThanOrEqual(p.bodyEnd);
            previousEnd = child.bodyEnd;
            stack.push(child);
          }
        }
      }),
      { numRuns: RUNS },
    );
  });
});
