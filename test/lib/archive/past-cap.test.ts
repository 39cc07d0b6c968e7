/**
 * Archives too big to hold, read as they stream past (past-cap.ts), here a gzip inside a zip or
 * a gzip inflated a second time (inflate-nested.ts), on what a sender would craft against it: a
 * bomb behind the padding (stopped at maxTotalBytes, or at maxRatio of the inner level), a
 * damaged inner stream (a problem, not a crash), a file that is no archive (read for its head,
 * no more), a header whose FEXTRA pushes the name back, and the stage's signal.
 */
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { type ArchiveLimits, Budget, type ContentNode, expand, newNode } from '../../../src/lib/archive/expand';
import { detectType, HEAD_BYTES } from '../../../src/lib/archive/magic';
import { makeGzip, makeTar, makeZip, peExecutable, storedGzip } from '../../helpers/archives';

const MiB = 1024 * 1024;
const LIMITS: ArchiveLimits = { maxDepth: 8, maxMembers: 2000, maxMemberBytes: MiB, maxTotalBytes: 128 * MiB, maxRatio: 200, ratioFloorBytes: MiB };

/** About 7.5:1 in deflate: under the padding rule's 8, so a member this large is only `size`. */
const underEight = (blocks = 1100) => Buffer.concat(Array.from({ length: blocks }, () => Buffer.concat([randomBytes(125), Buffer.alloc(875)])));

async function walk(name: string, data: Buffer, limits: Partial<ArchiveLimits> = {}, signal = new AbortController().signal) {
  const node = newNode('2', [name], []);
  node.types = detectType(data.subarray(0, HEAD_BYTES));
  const budget = new Budget({ ...LIMITS, ...limits });
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
