/**
 * Two-level streamed decompression (inflate-nested.ts): what each level gave, the caps on both
 * (bytes of the two together, each level's ratio to its input), damage named by level, and the
 * caller's signal.
 */
import { randomBytes } from 'node:crypto';
import { deflateRawSync, gzipSync } from 'node:zlib';
import { inflateNested, type NestedOptions } from '../../../src/lib/archive/inflate-nested';

const MiB = 1024 * 1024;

function options(over: Partial<NestedOptions> = {}): NestedOptions & { seen: Buffer[] } {
  const seen: Buffer[] = [];
  return { maxBytes: 64 * MiB, maxRatio: 200, ratioFloorBytes: MiB, signal: new AbortController().signal, onMiddle: () => {}, onInner: (c) => !seen.push(c), seen, ...over };
}

describe('inflateNested', () => {
  const content = randomBytes(300 * 1024);
  const inner = gzipSync(content);

  it('gives the inner file whole through a raw deflate or a gzip around it, counting both levels', async () => {
    for (const [format, outer] of [
      ['raw', deflateRawSync(inner)],
      ['gzip', gzipSync(inner)],
    ] as const) {
      const o = options();
      const r = await inflateNested(format, outer, o);
      expect(r).toEqual({ middle: inner.length, inner: content.length, complete: true });
      expect(Buffer.concat(o.seen).equals(content)).toBe(true);
    }
  });

  it("stops at maxBytes of the two levels together, and at either level's ratio", async () => {
    const bomb = gzipSync(gzipSync(Buffer.alloc(32 * MiB)));
    const sized = await inflateNested('gzip', bomb, options({ maxBytes: 4 * MiB }));
    expect(sized.limit).toBe('size');
    expect(sized.middle + sized.inner).toBeLessThan(4 * MiB + 256 * 1024);
    const inRatio = await inflateNested('gzip', gzipSync(gzipSync(Buffer.alloc(20 * MiB), { level: 9 }), { level: 0 }), options({ maxRatio: 50 }));
    expect(inRatio.limit).toBe('ratio');
    const outRatio = await inflateNested('gzip', gzipSync(Buffer.concat([inner, Buffer.alloc(20 * MiB)])), options({ maxRatio: 50 }));
    expect(outRatio.limit).toBe('ratio');
    expect(outRatio.middle).toBeLessThan(60 * MiB);
  });

  it('names the level whose data is damaged, and throws for neither', async () => {
    const outer = await inflateNested('raw', randomBytes(4096), options());
    expect(outer.corrupt).toMatch(/^outer: /);
    const broken = Buffer.from(inner);
    broken.fill(0xff, 20, 200);
    const r = await inflateNested('raw', deflateRawSync(broken), options());
    expect(r.corrupt).toMatch(/^inner gzip: /);
  });

  it("rejects with the signal's reason", async () => {
    const ac = new AbortController();
    ac.abort(new Error('stage timeout'));
    await expect(inflateNested('raw', deflateRawSync(inner), options({ signal: ac.signal }))).rejects.toThrow('stage timeout');
  });
});
