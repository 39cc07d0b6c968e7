/**
 * The padding rule (padding.ts) on members read by the real lsar and unar: an archive of a
 * compressed kind too big to walk into that came out of its 7z, xz or bzip2 member more than 8
 * times larger is a `ratio` limit, not `size`; the packed size lsar lists per member (a solid
 * block's for its members), or the archive's own for xz and bzip2; archives that are only
 * large stay `size`; a stream read on for the rule costs at most 8 times the archive.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type ArchiveLimits, Budget, type ContentNode, expand, newNode } from '../../../src/lib/archive/expand';
import { EXTERNAL_FORMATS, ExternalUnpacker, ProcessSlots } from '../../../src/lib/archive/external';
import { detectType, HEAD_BYTES } from '../../../src/lib/archive/magic';
import { compressWith, make7z, makeRar, makeTar, makeZip, peExecutable } from '../../helpers/archives';

const MiB = 1024 * 1024;
const LIMITS: ArchiveLimits = { maxDepth: 8, maxMembers: 2000, maxMemberBytes: MiB, maxTotalBytes: 128 * MiB, maxRatio: 200, ratioFloorBytes: MiB };

let tmp: string;
let unpacker: ExternalUnpacker;
beforeAll(() => {
  tmp = mkdtempSync(path.join(tmpdir(), 'postseal-unar-pad-'));
  unpacker = new ExternalUnpacker(
    { lsar: '/usr/bin/lsar', unar: '/usr/bin/unar', formats: [...EXTERNAL_FORMATS], timeoutMs: 20000, maxProcesses: 2, tmpDir: tmp },
    new ProcessSlots(),
  );
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function walk(name: string, data: Buffer, limits: Partial<ArchiveLimits> = {}) {
  const node = newNode('2', [name], []);
  node.types = detectType(data.subarray(0, HEAD_BYTES));
  const budget = new Budget({ ...LIMITS, ...limits }, undefined, unpacker);
  await expand(node, data, 1, budget, new AbortController().signal);
  return { node, budget };
}

function flat(node: ContentNode): string[] {
  return node.children.flatMap((c) => [`${c.path} ${c.names.join('|')} .${c.types.join(',.')}${c.limit ? ` limit:${c.limit}` : ''}`, ...flat(c)]);
}

/** A zip that stores 2 MiB of a random KB repeated (about 70:1 in any compressor), then a program. */
function paddedZip(): Buffer {
  const block = randomBytes(1000);
  return makeZip({ 'pad.bin': Buffer.concat(Array.from({ length: 2100 }, () => block)), 'invoice.pdf.exe': peExecutable() }, { store: true });
}

/** A zip of 2 MiB of random bytes: compresses by nothing (its member's head is not in its last MiB). */
const honestZip = () => makeZip({ 'photo.raw': randomBytes(2 * MiB) }, { store: true });

describe('the padding rule on members read by unar', () => {
  it("lists each member's packed size: its own out of a solid block, its block's in one, a RAR member's own", async () => {
    const list = async (data: Buffer) => {
      const file = path.join(tmp, 'listed');
      writeFileSync(file, data);
      try {
        const r = await unpacker.list(file, 100, new AbortController().signal);
        if (!('members' in r)) throw new Error(JSON.stringify(r));
        return Object.fromEntries(r.members.map((m) => [m.name, m.compressed]));
      } finally {
        rmSync(file);
      }
    };
    const files = { 'a.txt': 'hello '.repeat(1000), 'b.bin': randomBytes(5000) };
    const apart = await list(make7z(files, { solid: false }));
    expect(apart['a.txt']).toBeGreaterThan(0);
    expect(apart['a.txt']).toBeLessThan(200);
    expect(apart['b.bin']).toBeGreaterThanOrEqual(5000);
    const solid = await list(make7z(files));
    expect(solid['a.txt']).toBe(solid['b.bin']);
    expect(solid['a.txt']).toBeGreaterThanOrEqual(5000);
    // RAR (stored here: no free tool writes a compressed one) lists each member's own.
    expect(
      await list(
        makeRar([
          { name: 'a.txt', data: 'hello' },
          { name: 'b.exe', data: 'x'.repeat(100) },
        ]),
      ),
    ).toEqual({ 'a.txt': 5, 'b.exe': 100 });
  });

  it('makes a padded zip in a 7z a ratio limit, solid or not, where it was a size limit', async () => {
    for (const solid of [true, false]) {
      const { node } = await walk('docs.7z', make7z({ 'docs.zip': paddedZip(), 'readme.txt': 'see the zip\n' }, { solid }));
      expect(flat(node)).toEqual(['2/1 docs.zip .zip limit:ratio', '2/2 readme.txt .txt']);
    }
  });

  it("makes a padded zip in an xz or a bzip2 a ratio limit, by the archive's own size", async () => {
    const zip = paddedZip();
    for (const [name, data] of [
      ['docs.zip.xz', compressWith('xz', zip)],
      ['docs.zip.bz2', compressWith('bzip2', zip)],
    ] as const) {
      const { node } = await walk(name, data);
      expect(flat(node)).toEqual(['2/1 docs.zip .zip limit:ratio']);
    }
  });

  it('keeps a size limit for a zip in a 7z or an xz that is only large, and for a large tar', async () => {
    const zip = honestZip();
    // Its directory is still read from its end as unar writes it (past-cap.ts): the names in it.
    expect(flat((await walk('photos.7z', make7z({ 'photos.zip': zip }))).node)).toEqual(['2/1 photos.zip .zip limit:size', '2/1/1 photo.raw .']);
    const xz = compressWith('xz', zip);
    const { node, budget } = await walk('photos.zip.xz', xz);
    expect(node.children[0].limit).toBe('size');
    expect(node.children[0].children.map((c) => c.names[0])).toEqual(['photo.raw']);
    // Read on to its end for the rule: at most 8 times the archive's size, and here its whole length.
    expect(budget.inflatedBytes).toBe(zip.length);
    expect(budget.inflatedBytes).toBeLessThanOrEqual(8 * xz.length);
    // A tar is not compressed: a log tarball in a 7z shrinks a lot and is still only large.
    const tar = Buffer.concat([Buffer.alloc(512), Buffer.from('2026-12-07 ok\n'.repeat(100000))]);
    const logs = await walk('logs.7z', make7z({ 'logs.tar': tar }));
    expect(logs.node.children[0].limit).toBe('size');
  });

  it('stops reading an xz for the rule once its member is over 8 times the archive', async () => {
    // 64 MiB of zeros in a zip name: over the ratio at the member cap already, nothing read past it.
    const xz = compressWith('xz', Buffer.alloc(64 * MiB));
    const { node, budget } = await walk('docs.zip.xz', xz, { maxMemberBytes: 2 * MiB, maxRatio: 100000 });
    expect(node.children[0].limit).toBe('ratio');
    expect(budget.inflatedBytes).toBeLessThan(4 * MiB);
  });

  it('reads a tar too big to hold as unar writes it: a program after the padding in a 7z or an xz is found', async () => {
    // Fresh random bytes in each block: about 7.5:1, under the bomb ratio for so small an archive.
    const pad = Buffer.concat(Array.from({ length: 1100 }, () => Buffer.concat([randomBytes(125), Buffer.alloc(875)])));
    const tar = makeTar({ 'pad.bin': pad, 'invoice.pdf.exe': peExecutable() });
    const seven = await walk('docs.7z', make7z({ 'docs.tar': tar, 'notes.txt': 'see the tar\n' }, { solid: false }));
    expect(flat(seven.node)).toEqual(expect.arrayContaining(['2/1 docs.tar .tar limit:size', '2/1/1 pad.bin .dat', '2/1/2 invoice.pdf.exe .exe,.exe-ms', '2/2 notes.txt .txt']));
    const xz = await walk('docs.tar.xz', compressWith('xz', tar));
    expect(flat(xz.node)).toEqual(['2/1 docs.tar .tar limit:size', '2/1/1 pad.bin .dat', '2/1/2 invoice.pdf.exe .exe,.exe-ms']);
    // Read once, as it came, and kept nowhere.
    expect(xz.budget.inflatedBytes).toBe(tar.length);
  });

  it('marks damaged, not delivers unchecked, an archive whose listed size lies it over maxMemberBytes, last in its RAR or not', async () => {
    // 300 KB of 7z listed at 2 MiB: under 8 times its packed size, so only `size` by its listing; unar extracts it whole.
    const inner = make7z({ 'pad.bin': randomBytes(300 * 1024), 'invoice.pdf.exe': peExecutable() });
    const last = await walk('docs.rar', makeRar([{ name: 'inner.7z', data: inner, size: 2 * MiB }]));
    expect(last.node.problem).toMatch(/of the 2097152 bytes listed/);
    const first = await walk(
      'docs.rar',
      makeRar([
        { name: 'inner.7z', data: inner, size: 2 * MiB },
        { name: 'notes.txt', data: 'x' },
      ]),
    );
    expect(first.node.problem).toMatch(/bytes listed/);
  });

  it('walks into a small zip in the last MiB of a zip too big to hold that unar writes', async () => {
    const big = makeZip({ 'photo.raw': randomBytes(2 * MiB), 'evil.zip': makeZip({ 'invoice.pdf.exe': peExecutable() }) });
    const { node } = await walk('docs.zip.xz', compressWith('xz', big));
    expect(flat(node).slice(1)).toEqual(['2/1/1 photo.raw .', '2/1/2 evil.zip .zip', '2/1/2/1 invoice.pdf.exe .exe,.exe-ms']);
  });

  it('walks into a small zip after the padding of a tar too big to hold that unar writes, as if the tar were held', async () => {
    const pad = Buffer.concat(Array.from({ length: 1100 }, () => Buffer.concat([randomBytes(125), Buffer.alloc(875)])));
    const tar = makeTar({ 'pad.bin': pad, 'evil.zip': makeZip({ 'invoice.pdf.exe': peExecutable() }) });
    const { node } = await walk('docs.tar.xz', compressWith('xz', tar));
    expect(flat(node)).toEqual(['2/1 docs.tar .tar limit:size', '2/1/1 pad.bin .dat', '2/1/2 evil.zip .zip', '2/1/2/1 invoice.pdf.exe .exe,.exe-ms']);
  });
});
