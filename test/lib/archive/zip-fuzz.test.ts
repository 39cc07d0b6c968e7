/**
 * Property tests of the archive readers against hostile input: real archives (Info-ZIP, GNU
 * tar + gzip) with bytes overwritten, cut or repeated, and random bytes behind a zip or gzip
 * signature. Whatever comes in, the walk ends with a tree, within its limits, and throws nothing.
 */
import fc from 'fast-check';
import { Budget, expand, newNode, type ArchiveLimits } from '../../../src/lib/archive/expand';
import { detectType } from '../../../src/lib/archive/magic';
import { listTar, TarScanner } from '../../../src/lib/archive/tar';
import { localName, memberData, readZipDirectory } from '../../../src/lib/archive/zip';
import { makeTar, makeTarGz, makeZip } from '../../helpers/archives';

const limits: ArchiveLimits = { maxDepth: 4, maxMembers: 200, maxMemberBytes: 1 << 20, maxTotalBytes: 4 << 20, maxRatio: 100, ratioFloorBytes: 64 * 1024 };

const inner = makeZip({ 'x.exe': 'MZ', 'y.txt': 'why '.repeat(50) });
const seeds = {
  zip: makeZip({ 'a.txt': 'alpha '.repeat(40), 'b.zip': inner, 'c.bin': Buffer.alloc(300, 7) }),
  stored: makeZip({ 'a.txt': 'alpha', 'b.zip': inner }, { store: true }),
  tgz: makeTarGz({ 'one.txt': 'one', 'two.zip': inner }),
};

/** Walks `data` as the top archive; returns the node count, throwing only what expand throws. */
async function walk(data: Buffer): Promise<number> {
  const node = newNode('2', ['f'], []);
  node.types = detectType(data.subarray(0, 0x8006));
  const budget = new Budget(limits);
  await expand(node, data, 1, budget, new AbortController().signal);
  let count = 0;
  const stack = [node];
  while (stack.length) {
    const n = stack.pop()!;
    count++;
    stack.push(...n.children);
  }
  expect(budget.members).toBeLessThanOrEqual(limits.maxMembers);
  expect(budget.inflatedBytes).toBeLessThanOrEqual(limits.maxTotalBytes + 64 * 1024);
  return count;
}

/** Anywhere, or (as often) in the last 200 bytes, where a zip's directory and end record are. */
const position = (size: number) =>
  fc.oneof(
    fc.nat(size - 1),
    fc.nat(Math.min(199, size - 1)).map((back) => size - 1 - back),
  );

/** Small values and the all-ones ones (0xff: zip64 markers, lengths) as often as any byte. */
const byte = fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0, 1, 0xff));

const mutation = (size: number) =>
  fc.oneof(
    fc.record({ kind: fc.constant('flip' as const), at: position(size), value: byte, width: fc.integer({ min: 1, max: 4 }) }),
    fc.record({ kind: fc.constant('cut' as const), at: position(size) }),
    fc.record({ kind: fc.constant('repeat' as const), at: position(size), length: fc.integer({ min: 1, max: 200 }) }),
  );

function apply(seed: Buffer, ms: readonly { kind: 'flip' | 'cut' | 'repeat'; at: number; value?: number; width?: number; length?: number }[]): Buffer {
  let b = Buffer.from(seed);
  for (const m of ms) {
    const at = Math.min(m.at, Math.max(0, b.length - 1));
    if (m.kind === 'flip') b.fill(m.value!, at, Math.min(b.length, at + m.width!));
    else if (m.kind === 'cut') b = b.subarray(0, at);
    else b = Buffer.concat([b.subarray(0, at), b.subarray(at, at + m.length!), b.subarray(at)]);
  }
  return b;
}

describe('archive readers under mutation', () => {
  for (const [name, seed] of Object.entries(seeds)) {
    it(`walk a mutated ${name} to the end without throwing`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(mutation(seed.length), { minLength: 1, maxLength: 4 }), async (ms) => {
          expect(await walk(apply(seed, ms))).toBeGreaterThanOrEqual(1);
        }),
        { numRuns: 1000 },
      );
    });
  }

  it('read random bytes behind a zip signature, or a zip end record, without throwing', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), fc.boolean(), (bytes, tail) => {
        const b = tail
          ? Buffer.concat([Buffer.from(bytes), Buffer.from('PK\x05\x06', 'latin1'), Buffer.from(bytes.subarray(0, 18))])
          : Buffer.concat([Buffer.from('PK\x03\x04', 'latin1'), Buffer.from(bytes)]);
        const dir = readZipDirectory(b, 50);
        expect(dir.entries.length).toBeLessThanOrEqual(50);
      }),
      { numRuns: 2000 },
    );
  });

  it('read the end of a mutated zip (one too big to hold) and its members without throwing', () => {
    const seed = makeZip({ 'a.txt': 'hello', 'b.bin': Buffer.alloc(3000, 1), 'c.exe': 'MZ' }, { store: true });
    fc.assert(
      fc.property(fc.array(mutation(seed.length), { minLength: 1, maxLength: 4 }), fc.nat(seed.length), (ms, cut) => {
        const tail = apply(seed, ms).subarray(cut);
        for (const e of readZipDirectory(tail, 50, cut).entries) {
          memberData(tail, e);
          localName(tail, e);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('scan a mutated tar in slices of any size as listTar lists it, without throwing', () => {
    const seed = makeTar({ [`${'d'.repeat(120)}/long.exe`]: 'MZ', 'b.bin': Buffer.alloc(1500, 1), 'c.txt': 'see' });
    fc.assert(
      fc.property(fc.array(mutation(seed.length), { minLength: 1, maxLength: 4 }), fc.integer({ min: 1, max: 2000 }), (ms, slice) => {
        const t = apply(seed, ms);
        const scanner = new TarScanner(20, 64);
        for (let at = 0; at < t.length && !scanner.done; at += slice) scanner.push(t.subarray(at, at + slice));
        const listed = listTar(t, 20);
        // listTar also stops at a member that runs past the buffer; the scanner waits for more.
        if (!listed.problem) expect(scanner.finish().map((e) => e.name)).toEqual(listed.entries.map((e) => e.name));
      }),
      { numRuns: 1000 },
    );
  });

  it('list random bytes as tar without throwing', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 512, maxLength: 4000 }), (bytes) => {
        expect(listTar(Buffer.from(bytes), 20).entries.length).toBeLessThanOrEqual(20);
        const scanner = new TarScanner(20, 64);
        for (let at = 0; at < bytes.length && !scanner.done; at += 333) scanner.push(Buffer.from(bytes.subarray(at, at + 333)));
        expect(scanner.finish().length).toBeLessThanOrEqual(20);
      }),
      { numRuns: 1000 },
    );
  });

  it('walk random bytes behind a gzip header without throwing', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 3000 }), async (bytes) => {
        await walk(Buffer.concat([Buffer.from([0x1f, 0x8b, 0x08, 0x08, 0, 0, 0, 0, 0, 3]), Buffer.from(bytes)]));
      }),
      { numRuns: 300 },
    );
  });
});
