/**
 * Archives too big to hold, read as they stream past (past-cap.ts), here a gzip inside a zip or
 * a gzip inflated a second time (inflate-nested.ts), on what a sender would craft against it: a
 * bomb behind the padding (stopped at maxTotalBytes, or at maxRatio of the inner level), a
 * damaged inner stream (a problem, not a crash), a file that is no archive (read for its head,
 * no more), a header whose FEXTRA pushes the name back, a name over 1 KiB (its end kept), and
 * the stage's signal.
 */
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { type ArchiveLimits, Budget, type ContentNode, expand, newNode } from '../../../src/lib/archive/expand';
import { detectType, HEAD_BYTES } from '../../../src/lib/archive/magic';
import { ByteBudget } from '../../../src/lib/archive/memory';
import { readerFor } from '../../../src/lib/archive/past-cap';
import { makeGzip, makeTar, makeZip, peExecutable, storedGzip } from '../../helpers/archives';

const MiB = 1024 * 1024;
const LIMITS: ArchiveLimits = { maxDepth: 8, maxMembers: 2000, maxMemberBytes: MiB, maxTotalBytes: 128 * MiB, maxRatio: 200, ratioFloorBytes: MiB };

/** About 7.5:1 in deflate: under the padding rule's 8, so a member this large is only `size`. */
const underEight = (blocks = 1100) => Buffer.concat(Array.from({ length: blocks }, () => Buffer.concat([randomBytes(125), Buffer.alloc(875)])));

async function walk(name: string, data: Buffer, limits: Partial<ArchiveLimits> = {}, signal = new AbortController().signal, memory?: ByteBudget) {
  const node = newNode('2', [name], []);
  node.types = detectType(data.subarray(0, HEAD_BYTES));
  const budget = new Budget({ ...LIMITS, ...limits }, memory);
  await expand(node, data, 1, budget, signal);
  return { node, budget };
}

function flat(node: ContentNode): string[] {
  return node.children.flatMap((c) => [`${c.path} ${c.names.join('|')} .${c.types.join(',.')}${c.limit ? ` limit:${c.limit}` : ''}${c.problem ? ' problem' : ''}`, ...flat(c)]);
}

describe('a gzip too big to hold, read as it streams past', () => {
  const padded = storedGzip('docs.tar', makeTar({ 'pad.bin': underEight(), 'invoice.pdf.exe': peExecutable() }));

  it('lists the tar inside a padded gzip inside a zip, and the tar inside a padded gzip inside a gzip', async () => {
    const zipped = await walk('docs.zip', makeZip({ 'docs.tar.gz': padded }));
    expect(flat(zipped.node)).toEqual(['2/1 docs.tar.gz .gz limit:size', '2/1/1 docs.tar .tar', '2/1/1/1 pad.bin .dat', '2/1/1/2 invoice.pdf.exe .exe,.exe-ms']);
    const gzipped = await walk('archive.gz', makeGzip('docs.tar.gz', padded));
    expect(flat(gzipped.node)).toEqual(['2/1 docs.tar.gz|archive .gz limit:size', ...flat(zipped.node).slice(1)]);
  });

  it('finds the name after a 64 KiB FEXTRA field, where gunzip -N still finds it', async () => {
    const plain = storedGzip('invoice.pdf.exe', Buffer.concat([peExecutable(), underEight()]));
    const extra = Buffer.alloc(0xffff, 0x41);
    const len = Buffer.alloc(2);
    len.writeUInt16LE(extra.length);
    // FLG: FEXTRA (4) | FNAME (8); the extra field goes before the name.
    const withExtra = Buffer.concat([plain.subarray(0, 3), Buffer.from([12]), plain.subarray(4, 10), len, extra, plain.subarray(10)]);
    const { node } = await walk('docs.zip', makeZip({ 'payload.gz': withExtra }));
    expect(node.children[0].children[0].names).toEqual(['invoice.pdf.exe', 'payload']);
  });

  it('keeps the end of a name over 1 KiB, the extension, held or too big to hold', async () => {
    const name = `${'docs/'.repeat(220)}invoice.pdf.exe`;
    const held = await walk('docs.zip', makeZip({ 'payload.gz': storedGzip(name, peExecutable()) }));
    expect(held.node.children[0].children[0].names[0]).toMatch(/\/invoice\.pdf\.exe$/);
    expect(held.node.children[0].children[0].names[0]).toHaveLength(1024);
    const past = await walk('docs.zip', makeZip({ 'payload.gz': storedGzip(name, Buffer.concat([peExecutable(), underEight()])) }));
    expect(past.node.children[0].children[0].names[0]).toMatch(/\/invoice\.pdf\.exe$/);
  });

  it('reads a file that is no archive for its head only, then stops', async () => {
    const report = storedGzip('report.txt', Buffer.concat(Array.from({ length: 6 }, () => underEight())).toString('base64'));
    expect(report.length).toBeGreaterThan(8 * MiB);
    const { node, budget } = await walk('docs.zip', makeZip({ 'report.gz': report }));
    expect(flat(node)).toEqual(['2/1 report.gz .gz limit:size', '2/1/1 report.txt|report .txt']);
    // The member cap's worth for the whole inflation, then little more than a head twice.
    expect(budget.inflatedBytes).toBeLessThan(2 * MiB);
  });

  // A tar whose second member is 64 MiB of zeros, gzipped in two members (gunzip reads on):
  // the padding stored, the rest compressed a thousandfold.
  let bomb: Buffer;
  beforeAll(() => {
    const tar = makeTar({ 'pad.bin': underEight(), 'zeros.bin': Buffer.alloc(64 * MiB) });
    const split = 1100 * 1000;
    bomb = Buffer.concat([storedGzip('x.tar', tar.subarray(0, split)), gzipSync(tar.subarray(split), { level: 9 })]);
  });

  it('stops a tar bomb behind the padding at what is left of maxTotalBytes', async () => {
    const { node, budget } = await walk('docs.zip', makeZip({ 'x.tar.gz': bomb }), { maxTotalBytes: 8 * MiB });
    expect(node.children[0].limit).toBe('size');
    expect(flat(node)).toContain('2/1/1/2 zeros.bin .dat');
    expect(budget.inflatedBytes).toBeLessThan(8 * MiB + 512 * 1024);
  });

  it('stops a tar bomb behind the padding at maxRatio of the inner level', async () => {
    const { node, budget } = await walk('docs.zip', makeZip({ 'x.tar.gz': bomb }), { maxRatio: 20 });
    expect(node.children[0].limit).toBe('ratio');
    expect(budget.inflatedBytes).toBeLessThan(40 * MiB);
  });

  it('marks a damaged inner stream a problem and keeps the members read before it', async () => {
    const damaged = Buffer.from(padded);
    // The stored gzip's CRC (its trailer) no longer matches: zlib fails at the very end.
    damaged[damaged.length - 8] ^= 1;
    const { node } = await walk('docs.zip', makeZip({ 'docs.tar.gz': damaged }));
    expect(node.children[0].problem).toMatch(/inner gzip/);
    expect(flat(node)).toContain('2/1/1/1 pad.bin .dat');
    // Not a gzip after all, for all its name and first bytes: a problem, nothing thrown.
    const fake = Buffer.concat([padded.subarray(0, 20), randomBytes(2 * MiB)]);
    const r = await walk('docs.zip', makeZip({ 'docs.tar.gz': fake }));
    expect(r.node.children[0].problem).toMatch(/inner gzip/);
  });

  it("rejects with the stage signal's reason when it aborts mid-stream", async () => {
    const ac = new AbortController();
    const zip = makeZip({ 'docs.tar.gz': padded });
    const done = walk('docs.zip', zip, {}, ac.signal);
    setImmediate(() => ac.abort(new Error('stage timeout')));
    await expect(done).rejects.toThrow('stage timeout');
  });
});

/** The end record's offset in a zip (the last one). */
const eocdOf = (zip: Buffer) => zip.lastIndexOf(Buffer.from('PK\x05\x06', 'latin1'));

/** `zip` with a comment of `bytes` zeros on each central directory entry (the end record follows suit). */
function withComments(zip: Buffer, bytes: number): Buffer {
  const eocd = eocdOf(zip);
  const count = zip.readUInt16LE(eocd + 10);
  const offset = zip.readUInt32LE(eocd + 16);
  const entries: Buffer[] = [];
  for (let i = 0, at = offset; i < count; i++) {
    const next = at + 46 + zip.readUInt16LE(at + 28) + zip.readUInt16LE(at + 30) + zip.readUInt16LE(at + 32);
    const entry = Buffer.from(zip.subarray(at, next));
    entry.writeUInt16LE(zip.readUInt16LE(at + 32) + bytes, 32);
    entries.push(entry, Buffer.alloc(bytes));
    at = next;
  }
  const directory = Buffer.concat(entries);
  const end = Buffer.from(zip.subarray(eocd));
  end.writeUInt32LE(directory.length, 12);
  return Buffer.concat([zip.subarray(0, offset), directory, end]);
}

/**
 * An inner zip too big to hold, its central directory read from the last MiB (past-cap.ts): one
 * whose end record understates the directory's size (unzip compensates and lists every member),
 * and one whose directory is padded with comments past that MiB.
 */
describe('a zip in a zip too big to hold, read for its directory as it streams past', () => {
  /** About 4:1 in deflate: 2 MiB of it and a directory of zeros stay under the padding rule's 8. */
  const pad = Buffer.concat(Array.from({ length: 2100 }, () => Buffer.concat([randomBytes(250), Buffer.alloc(750)])));
  const fillers = Object.fromEntries(Array.from({ length: 18 }, (_, i) => [`notes${i}.txt`, 'x']));
  const inner = makeZip({ 'pad.bin': pad, 'invoice.pdf.exe': peExecutable(), ...fillers }, { store: true });

  it('lists the program in the zip as it is', async () => {
    const { node } = await walk('docs.zip', makeZip({ 'docs.zip': inner }));
    expect(node.children[0].limit).toBe('size');
    expect(flat(node)).toContain('2/1/2 invoice.pdf.exe .exe,.exe-ms');
  });

  it('keeps its end in the process-wide memory budget: busy (a tempfail, not unchecked) when there is no room now', async () => {
    const roomy = new ByteBudget(64 * MiB, 100);
    const held = await walk('docs.zip', makeZip({ 'docs.zip': inner }), {}, undefined, roomy);
    expect(flat(held.node)).toContain('2/1/2 invoice.pdf.exe .exe,.exe-ms');
    expect(roomy.inUse).toBeGreaterThanOrEqual(2 * MiB);
    held.budget.releaseAll();
    expect(roomy.inUse).toBe(0);
    const tight = new ByteBudget(2 * MiB, 100);
    const busy = await walk('docs.zip', makeZip({ 'docs.zip': inner }), {}, undefined, tight);
    expect(busy.node.children[0].limit).toBe('busy');
    busy.budget.releaseAll();
    expect(tight.inUse).toBe(0);
  });

  it('walks into a small zip, stored or deflated, in the last MiB of a zip too big to hold, as if it were held', async () => {
    const evil = makeZip({ 'invoice.pdf.exe': peExecutable() });
    for (const store of [true, false]) {
      // Info-ZIP deflates pad.bin at 4:1 (or stores it): the inner zip is over maxMemberBytes either way.
      const big = makeZip({ 'pad.bin': Buffer.concat([pad, randomBytes(MiB)]), 'evil.zip': evil }, { store });
      const { node } = await walk('docs.zip', makeZip({ 'docs.zip': big }));
      expect([store, flat(node).slice(2)]).toEqual([store, ['2/1/2 evil.zip .zip', '2/1/2/1 invoice.pdf.exe .exe,.exe-ms']]);
    }
  });

  it('lists the program in a zip whose end record understates its directory (found by its offset, as unzip does)', async () => {
    const lying = Buffer.from(inner);
    lying.writeUInt32LE(lying.readUInt32LE(eocdOf(lying) + 12) - 46, eocdOf(lying) + 12);
    const { node } = await walk('docs.zip', makeZip({ 'docs.zip': lying }));
    expect(node.children[0].limit).toBe('size');
    expect(flat(node)).toContain('2/1/2 invoice.pdf.exe .exe,.exe-ms');
  });

  it('marks a problem (banned as damage, not delivered unchecked) a zip whose directory, under the member cap, is padded past the MiB kept', async () => {
    const padded = withComments(inner, 60_000);
    expect(padded.length - padded.readUInt32LE(eocdOf(padded) + 16)).toBeGreaterThan(MiB);
    const { node } = await walk('docs.zip', makeZip({ 'docs.zip': padded }));
    expect(node.children[0]).toMatchObject({ limit: 'size', problem: expect.stringMatching(/central directory starts before the end kept/) });
  });

  it('leaves a size limit alone on a zip whose directory past the MiB kept has more members than the cap has room for', async () => {
    const { node } = await walk('docs.zip', makeZip({ 'docs.zip': withComments(inner, 60_000) }), { maxMembers: 10 });
    expect(node.children[0].limit).toBe('size');
    expect(node.children[0].problem).toBeUndefined();
  });
});

describe('a tar too big to hold, read as it streams past', () => {
  const tar = makeTar(Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`part${i}.bin`, randomBytes(HEAD_BYTES + 100)])));
  const read = (maxMembers: number) => {
    const node = newNode('2', ['big.tar'], []);
    node.types = ['tar'];
    const budget = new Budget({ ...LIMITS, maxMembers });
    const reader = readerFor(node, budget, new AbortController().signal, () => false);
    for (let at = 0; at < tar.length; at += 10_000) reader?.push(tar.subarray(at, at + 10_000));
    return { node, reader, budget };
  };

  it("judges each member as it passes, holding no member's head to the end", () => {
    const { node, reader } = read(2000);
    expect(node.children.map((c) => c.names[0])).toEqual(Array.from({ length: 40 }, (_, i) => `part${i}.bin`));
    reader?.finish(true);
    expect(node.children).toHaveLength(40);
  });

  it('still stops at the member cap', () => {
    const { node, reader, budget } = read(5);
    reader?.finish(true);
    expect(node.children).toHaveLength(5);
    expect(budget.members).toBe(5);
  });
});

/**
 * An archive in a tar too big to hold, kept whole as the tar streams past and walked into as if
 * the tar were held (a `size` limit, it was delivered unchecked from a 150 KB message).
 */
describe('a small archive in a tar too big to hold', () => {
  const evil = () => makeZip({ 'invoice.pdf.exe': peExecutable() });

  it('is walked into after the padding of a tar in a zip, and of a tar in a padded gzip in a zip', async () => {
    const tar = makeTar({ 'pad.bin': underEight(), 'evil.zip': evil() });
    const zipped = await walk('docs.zip', makeZip({ 'docs.tar': tar }));
    expect(flat(zipped.node)).toEqual(['2/1 docs.tar .tar limit:size', '2/1/1 pad.bin .dat', '2/1/2 evil.zip .zip', '2/1/2/1 invoice.pdf.exe .exe,.exe-ms']);
    const gzipped = await walk('docs.zip', makeZip({ 'docs.tar.gz': storedGzip('docs.tar', tar) }));
    expect(flat(gzipped.node)).toContain('2/1/1/2/1 invoice.pdf.exe .exe,.exe-ms');
  });

  it('is kept in the process-wide memory budget until the walk ends, and is busy (a tempfail, not unchecked) when the budget has no room now', async () => {
    const tar = makeTar({ 'pad.bin': underEight(), 'evil.zip': evil() });
    const message = makeZip({ 'docs.tar': tar });
    const memory = new ByteBudget(64 * MiB, 100);
    const { node, budget } = await walk('docs.zip', message, {}, undefined, memory);
    expect(flat(node)).toContain('2/1/2/1 invoice.pdf.exe .exe,.exe-ms');
    expect(memory.peak).toBeGreaterThan(0);
    budget.releaseAll();
    expect(memory.inUse).toBe(0);
    // The member's own lease (the tar, 1 MiB) fits; the kept zip of a few hundred bytes does not.
    const tight = new ByteBudget(MiB, 100);
    const full = await walk('docs.zip', message, {}, undefined, tight);
    expect(flat(full.node)).toContain('2/1/2 evil.zip .zip limit:busy');
    full.budget.releaseAll();
    expect(tight.inUse).toBe(0);
  });

  it('is a size limit, as before, once those kept would pass maxMemberBytes together', async () => {
    const big = makeZip({ 'photo.raw': randomBytes(700 * 1024) }, { store: true });
    const tar = makeTar({ 'pad.bin': underEight(), 'a.zip': big, 'b.zip': big, 'c.zip': evil() });
    const { node } = await walk('docs.zip', makeZip({ 'docs.tar': tar }));
    expect(flat(node).slice(2)).toEqual(['2/1/2 a.zip .zip', '2/1/2/1 photo.raw .dat', '2/1/3 b.zip .zip limit:size', '2/1/4 c.zip .zip', '2/1/4/1 invoice.pdf.exe .exe,.exe-ms']);
  });
});
