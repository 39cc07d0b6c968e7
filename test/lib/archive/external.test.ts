/**
 * RAR, 7z, cab, xz, bzip2 and ISO archives walked into through the real lsar and unar (Debian
 * package unar), on archives the real tools made (7zz, gcab, genisoimage, xz, bzip2; RAR
 * written by test/helpers/archives.ts): names, types, nesting both ways, encrypted members
 * and listings, the caps (total bytes, members, ratio, time), damage, and the process slots.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { mainConfigSchema } from '../../../src/config/main-schema';
import { type ArchiveLimits, Budget, type ContentNode, expand, newNode } from '../../../src/lib/archive/expand';
import { EXTERNAL_FORMATS, ExternalUnpacker, ProcessSlots } from '../../../src/lib/archive/external';
import { detectType, HEAD_BYTES } from '../../../src/lib/archive/magic';
import { compressWith, make7z, makeBinHex, makeCab, makeIso, makeRar, makeRar5, makeTar, makeZip } from '../../helpers/archives';

const MiB = 1024 * 1024;
const LIMITS: ArchiveLimits = { maxDepth: 8, maxMembers: 2000, maxMemberBytes: 32 * MiB, maxTotalBytes: 128 * MiB, maxRatio: 200, ratioFloorBytes: MiB };
const exe = Buffer.concat([Buffer.from('MZ'), Buffer.alloc(126)]);

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(path.join(tmpdir(), 'postseal-unar-test-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function unpacker(opts: { lsar?: string; timeoutMs?: number; maxProcesses?: number; slots?: ProcessSlots; memoryBytes?: number } = {}) {
  const settings = {
    lsar: opts.lsar ?? '/usr/bin/lsar',
    unar: '/usr/bin/unar',
    formats: [...EXTERNAL_FORMATS],
    timeoutMs: opts.timeoutMs ?? 20000,
    maxProcesses: opts.maxProcesses ?? 2,
    tmpDir: tmp,
    ...(opts.memoryBytes ? { memoryBytes: opts.memoryBytes } : {}),
  };
  return new ExternalUnpacker(settings, opts.slots ?? new ProcessSlots());
}

async function walk(name: string, data: Buffer, limits: Partial<typeof LIMITS> = {}, u: ExternalUnpacker | null = unpacker(), signal = new AbortController().signal) {
  const node = newNode('2', [name], []);
  node.types = detectType(data.subarray(0, HEAD_BYTES));
  const budget = new Budget({ ...LIMITS, ...limits }, undefined, u ?? undefined);
  await expand(node, data, 1, budget, signal);
  return { node, budget };
}

/** path, names and types of every node under `node`, depth first. */
function flat(node: ContentNode): string[] {
  return node.children.flatMap((c) => [`${c.path} ${c.names.join('|')} .${c.types.join(',.')}${c.encrypted ? ' encrypted' : ''}${c.limit ? ` limit:${c.limit}` : ''}`, ...flat(c)]);
}

describe('archives read by unar', () => {
  afterEach(() => expect(readdirSync(tmp)).toEqual([]));

  it('lists a 7z and types its members by their bytes, whatever their names say', async () => {
    const { node } = await walk('a.7z', make7z({ 'invoice.pdf.exe': exe, 'notes.txt': exe, 'readme.txt': 'hello\n' }));
    expect(node.problem).toBeUndefined();
    expect(flat(node)).toEqual(['2/1 invoice.pdf.exe .exe,.exe-ms', '2/2 notes.txt .exe,.exe-ms', '2/3 readme.txt .txt']);
  });

  it('splits a solid and a non-solid 7z alike, members of every size across unar output chunks', async () => {
    const big = Buffer.alloc(300 * 1024, 'a');
    const files = { 'a.bin': big, 'b.exe': exe, 'c.txt': 'x\n', 'd.bin': Buffer.alloc(0), 'e.exe': exe };
    for (const solid of [true, false]) {
      const { node } = await walk('a.7z', make7z(files, { solid }));
      expect(node.problem).toBeUndefined();
      // 7-Zip stores the empty file first.
      expect(flat(node)).toEqual(['2/1 d.bin .empty', '2/2 a.bin .txt', '2/3 b.exe .exe,.exe-ms', '2/4 c.txt .txt', '2/5 e.exe .exe,.exe-ms']);
    }
  });

  it('reads a RAR: names, types, and an encrypted member by its name only', async () => {
    const rar = makeRar([
      { name: 'report.doc', data: exe },
      { name: 'payload.exe', data: 'secret', encrypted: true },
      { name: 'inner.tar', data: makeTar({ 'run.scr': exe }) },
    ]);
    const { node } = await walk('a.rar', rar);
    expect(node.problem).toBeUndefined();
    expect(flat(node)).toEqual(['2/1 report.doc .exe,.exe-ms', '2/2 payload.exe . encrypted', '2/3 inner.tar .tar', '2/3/1 run.scr .exe,.exe-ms']);
  });

  it('reads a RAR 5: UTF-8 names, types, an empty member', async () => {
    const rar = makeRar5([
      { name: 'rapport é.txt', data: 'bonjour\n' },
      { name: 'photo.jpg', data: exe },
      { name: 'vide.txt', data: '' },
    ]);
    const { node } = await walk('a.rar', rar);
    expect(node.problem).toBeUndefined();
    expect(flat(node)).toEqual(['2/1 rapport é.txt .txt', '2/2 photo.jpg .exe,.exe-ms', '2/3 vide.txt .empty']);
  });

  it('calls a RAR 5 member of unknown size damage: unar writes nothing for it where WinRAR writes its data (a zip in it went unread)', async () => {
    const rar = makeRar5([
      { name: 'photo.jpg', data: exe, sizeUnknown: true },
      { name: 'inner.zip', data: makeZip({ 'evil.exe': exe }), sizeUnknown: true },
    ]);
    const { node } = await walk('a.rar', rar);
    expect(node.children.map((c) => c.problem)).toEqual([expect.stringMatching(/no unpacked size/), expect.stringMatching(/no unpacked size/)]);
  });

  it('reads a cab, an ISO image and the single file of an xz or bzip2, named after the outer name', async () => {
    expect(flat((await walk('a.cab', makeCab({ 'setup.txt': exe }))).node)).toEqual(['2/1 setup.txt .exe,.exe-ms']);
    expect(flat((await walk('disk.iso', makeIso({ 'photo.jpg': exe, 'b.txt': 'hi\n' }))).node)).toEqual(['2/1 b.txt .txt', '2/2 photo.jpg .exe,.exe-ms']);
    expect(flat((await walk('tool.exe.xz', compressWith('xz', exe))).node)).toEqual(['2/1 tool.exe .exe,.exe-ms']);
    expect(flat((await walk('logs.tbz2', compressWith('bzip2', makeTar({ 'a.scr': exe })))).node)).toEqual(['2/1 logs.tar .tar', '2/1/1 a.scr .exe,.exe-ms']);
  });

  it('reads a BinHex file (Convert::BinHex wrote it): its name and its type', async () => {
    expect(flat((await walk('invoice.hqx', makeBinHex('invoice.pdf.exe', exe))).node)).toEqual(['2/1 invoice.pdf.exe .exe,.exe-ms']);
  });

  it('walks a zip in a 7z, and a 7z in a zip, counting the depth across both', async () => {
    const inner = make7z({ 'x.exe': exe });
    expect(flat((await walk('a.7z', make7z({ 'in.zip': makeZip({ 'y.exe': exe }) }))).node)).toEqual(['2/1 in.zip .zip', '2/1/1 y.exe .exe,.exe-ms']);
    expect(flat((await walk('a.zip', makeZip({ 'in.7z': inner }))).node)).toEqual(['2/1 in.7z .7z', '2/1/1 x.exe .exe,.exe-ms']);
    expect(flat((await walk('a.zip', makeZip({ 'in.7z': inner }), { maxDepth: 1 })).node)).toEqual(['2/1 in.7z .7z limit:depth']);
  });

  it('marks a 7z whose names are encrypted (-mhe) as encrypted, with no members to name', async () => {
    const { node } = await walk('a.7z', make7z({ 'x.exe': exe }, { password: 'pw', encryptNames: true }));
    expect(node.encrypted).toBe(true);
    expect(node.children).toEqual([]);
    const data = await walk('b.7z', make7z({ 'x.exe': exe }, { password: 'pw' }));
    expect(flat(data.node)).toEqual(['2/1 x.exe . encrypted']);
  });

  it('stops unar at maxTotalBytes: a member it did not reach is marked, and no more is unpacked than the cap', async () => {
    const rar = makeRar([
      { name: 'zeros.bin', data: Buffer.alloc(12 * MiB) },
      { name: 'late.exe', data: exe },
    ]);
    const { node, budget } = await walk('a.rar', rar, { maxTotalBytes: 4 * MiB });
    expect(flat(node)).toEqual(['2/1 zeros.bin .dat', '2/2 late.exe . limit:total']);
    expect(budget.inflatedBytes).toBeLessThan(4 * MiB + MiB);
  });

  it('reads no further than the last member it needs: a large last member that is no archive ends the run at its head', async () => {
    const archive = make7z({ 'zeros.bin': Buffer.alloc(24 * MiB), 'late.exe': exe });
    expect(archive.length).toBeLessThan(MiB);
    const { node, budget } = await walk('a.7z', archive);
    expect(flat(node)).toEqual(['2/1 late.exe .exe,.exe-ms', '2/2 zeros.bin .dat']);
    expect(budget.inflatedBytes).toBeLessThan(4 * MiB);
  });

  it('stops an xz bomb (no size listed) at the ratio cap when it is an archive kept whole', async () => {
    const bomb = compressWith('xz', makeTar({ 'zeros.bin': Buffer.alloc(12 * MiB) }));
    expect(bomb.length).toBeLessThan(100 * 1024);
    const { node, budget } = await walk('a.tar.xz', bomb);
    expect(flat(node)).toEqual(['2/1 a.tar .tar limit:ratio']);
    expect(budget.inflatedBytes).toBeLessThan(200 * bomb.length + 2 * MiB);
  });

  it('reads only the head of a large member that is no archive, and stops unar there', async () => {
    const xz = compressWith('xz', Buffer.alloc(16 * MiB, 'log line\n'));
    const { node, budget } = await walk('server.log.xz', xz);
    expect(flat(node)).toEqual(['2/1 server.log .txt']);
    expect(budget.inflatedBytes).toBeLessThan(8 * MiB);
  });

  it('calls a listing too long to read for the member cap a member limit (delivered unchecked by default), not damage', async () => {
    const files = Object.fromEntries(Array.from({ length: 400 }, (_, i) => [`file-${i}.txt`, `${i}\n`]));
    const { node } = await walk('a.7z', make7z(files), { maxMembers: 10 });
    expect(node.problem).toBeUndefined();
    expect(node.limit).toBe('members');
  });

  it('stops the listing at the message member cap', async () => {
    const files = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`f${i}.txt`, `${i}\n`]));
    const { node, budget } = await walk('a.7z', make7z(files), { maxMembers: 10 });
    expect(node.limit).toBe('members');
    expect(node.children).toHaveLength(10);
    expect(budget.members).toBe(10);
  });

  it('passes an empty 7z (7-Zip opens it, lsar calls it error 2), a 7z of folders only and one of an empty file', async () => {
    // 7-Zip's archive of nothing: the signature header alone, its next header of size 0.
    const start = Buffer.alloc(20);
    const crc = Buffer.alloc(4);
    crc.writeUInt32LE(crc32(start));
    const empty = Buffer.concat([Buffer.from([0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c, 0, 4]), crc, start]);
    const dir = mkdtempSync(path.join(tmpdir(), 'postseal-7z-'));
    try {
      writeFileSync(path.join(dir, 'e.7z'), empty);
      execFileSync('7zz', ['t', path.join(dir, 'e.7z')], { stdio: 'ignore' });
      mkdirSync(path.join(dir, 'in', 'sub'), { recursive: true });
      execFileSync('7zz', ['a', '-bso0', path.join(dir, 'd.7z'), 'sub'], { cwd: path.join(dir, 'in') });
      const { node } = await walk('e.7z', empty);
      expect([node.problem, node.children]).toEqual([undefined, []]);
      expect(flat((await walk('d.7z', readFileSync(path.join(dir, 'd.7z')))).node)).toEqual(['2/1 sub .']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(flat((await walk('z.7z', make7z({ 'zero.txt': '' }))).node)).toEqual(['2/1 zero.txt .empty']);
  });

  it('calls damage damage: a truncated 7z, garbage after a RAR marker, a RAR member shorter than listed', async () => {
    const seven = make7z({ 'a.txt': 'hello '.repeat(1000) });
    expect((await walk('a.7z', seven.subarray(0, seven.length - 40))).node.problem).toMatch(/cannot be listed/);
    expect((await walk('a.rar', Buffer.concat([Buffer.from('Rar!\x1a\x07\x00', 'latin1'), Buffer.alloc(200, 0x41)]))).node.problem).toMatch(/lists no members/);
    const rar = makeRar([{ name: 'a.exe', data: exe }]);
    const cut = rar.subarray(0, rar.length - 7 - 100);
    const { node } = await walk('a.rar', cut);
    expect(node.problem).toBe('unar wrote 0 of the 128 bytes listed (exit 0)');
    expect(flat(node)).toEqual(['2/1 a.exe .']);
  });

  it('walks into a RAR behind a prefix when its name says .rar, as WinRAR finds the marker past any prefix', async () => {
    const rar = Buffer.concat([Buffer.from('Dear customer, please see the attached invoice.\n'.repeat(20)), makeRar([{ name: 'invoice.exe', data: exe }])]);
    expect(detectType(rar)).toEqual(['dat']);
    const { node } = await walk('invoice.rar', rar);
    expect(node.problem).toBeUndefined();
    expect(flat(node)).toEqual(['2/1 invoice.exe .exe,.exe-ms']);
  });

  it('cannot shift a program out of its member by a stored RAR size that lies: unar writes no more than listed, so the run comes out short', async () => {
    // a.txt declares 200 bytes and stores 72; b.txt stores a program and 72 bytes more and
    // declares 72. Split by the listed sizes, the program would start inside a.txt's 200.
    const text = Buffer.from('hello world\n'.repeat(6));
    const rar = makeRar([
      { name: 'a.txt', data: text, size: text.length + 128 },
      { name: 'b.txt', data: Buffer.concat([exe, Buffer.alloc(text.length)]), size: text.length },
    ]);
    const { node } = await walk('a.rar', rar);
    expect(node.problem).toBe('unar wrote 144 of the 272 bytes listed (exit 0)');
  });

  it('calls an ISO image with a UDF file system damage (Windows reads the UDF names, unar only the ISO 9660 ones), and a UDF-only image an image', async () => {
    const files = { 'readme.txt': 'hi\n', 'evil.exe': exe };
    const bridge = makeIso(files, { udf: true, joliet: false, hide: ['evil.exe'] });
    // The premise: 7-Zip (as Windows) reads evil.exe in the UDF tree; lsar lists only README.TXT.
    const dir = mkdtempSync(path.join(tmpdir(), 'postseal-udf-'));
    try {
      writeFileSync(path.join(dir, 'a.iso'), bridge);
      expect(execFileSync('7zz', ['l', '-tudf', path.join(dir, 'a.iso')]).toString()).toMatch(/evil\.exe/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const { node } = await walk('disk.iso', bridge);
    expect(node.problem).toMatch(/UDF/);
    // The same image with its ISO 9660 descriptors taken out: UDF only, still mounted by Windows.
    const udfOnly = Buffer.from(bridge);
    const sector = (n: number) => udfOnly.subarray(n * 2048, (n + 1) * 2048);
    const vrs = [18, 19, 20].map((n) => Buffer.from(sector(n)));
    for (const [i, n] of [16, 17, 18].entries()) vrs[i].copy(sector(n));
    for (const n of [19, 20]) sector(n).fill(0);
    expect(detectType(udfOnly.subarray(0, HEAD_BYTES))).toContain('iso');
    expect((await walk('disk.iso', udfOnly)).node.problem).toMatch(/UDF/);
    // A plain ISO 9660 image (no UDF) is read as before.
    expect((await walk('disk.iso', makeIso(files))).node.problem).toBeUndefined();
  });

  it('reads at most maxUnarArchives archives through unar per message: the next is an archives limit, with no tool run', async () => {
    const seven = make7z({ 'a.txt': 'x' });
    const zip = makeZip(Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`a${i}.7z`, seven])));
    const { node, budget } = await walk('a.zip', zip, { maxUnarArchives: 3 });
    expect(flat(node).filter((l) => l.includes('limit:archives'))).toEqual(['2/4 a3.7z .7z limit:archives', '2/5 a4.7z .7z limit:archives']);
    expect(budget.unarArchives).toBe(3);
    // zip, tar and gzip are not counted: no tool runs for them.
    expect((await walk('a.zip', makeZip({ 'in.zip': makeZip({ 'b.txt': 'x' }) }), { maxUnarArchives: 1 })).budget.unarArchives).toBe(0);
  });

  it('holds each tool run to its memory limit: lsar listing a small 7z of 10,000 empty files stops there, an ordinary archive is read', async () => {
    const many = make7z(Object.fromEntries(Array.from({ length: 10000 }, (_, i) => [`f${i}`, ''])));
    expect(many.length).toBeLessThan(64 * 1024);
    const u = unpacker({ memoryBytes: 16 * MiB });
    const { node } = await walk('a.7z', many, {}, u);
    expect(node.problem).toMatch(/Virtual memory exhausted/);
    expect(flat((await walk('b.7z', make7z({ 'x.exe': exe, 'y.txt': 'hello\n' }), {}, u)).node)).toEqual(['2/1 x.exe .exe,.exe-ms', '2/2 y.txt .txt']);
  });

  it('kills a tool that runs past timeoutMs and marks the archive with the time limit', async () => {
    const slow = path.join(tmp, '..', `slow-lsar-${process.pid}`);
    writeFileSync(slow, '#!/bin/sh\nexec sleep 30\n');
    chmodSync(slow, 0o755);
    try {
      const { node } = await walk('a.7z', make7z({ 'a.txt': 'x' }), {}, unpacker({ lsar: slow, timeoutMs: 1000 }));
      expect(node.limit).toBe('time');
    } finally {
      rmSync(slow, { force: true });
    }
  });

  it('kills the run and removes the archive file when the stage is aborted', async () => {
    const slow = path.join(tmp, '..', `slow-lsar2-${process.pid}`);
    writeFileSync(slow, '#!/bin/sh\nexec sleep 30\n');
    chmodSync(slow, 0o755);
    try {
      const ac = new AbortController();
      setTimeout(() => ac.abort(new Error('stage timed out')), 200);
      await expect(walk('a.7z', make7z({ 'a.txt': 'x' }), {}, unpacker({ lsar: slow }), ac.signal)).rejects.toThrow('stage timed out');
    } finally {
      rmSync(slow, { force: true });
    }
  });

  it('says what went wrong when lsar is not where it was configured', async () => {
    const { node } = await walk('a.7z', make7z({ 'a.txt': 'x' }), {}, unpacker({ lsar: '/nonexistent/lsar' }));
    expect(node.problem).toBe('lsar could not run (/nonexistent/lsar: not found)');
  });

  it('walks into none of these formats without an unpacker (decoders off or not installed)', async () => {
    const { node, budget } = await walk('a.7z', make7z({ 'x.exe': exe }), {}, null);
    expect(node.children).toEqual([]);
    expect(node.problem).toBeUndefined();
    expect(budget.archivesOpened).toBe(0);
  });

  it('runs at most maxProcesses tools at once across messages; the others wait their turn', async () => {
    const slots = new ProcessSlots();
    const u = unpacker({ maxProcesses: 1, slots });
    const archives = [make7z({ 'a.exe': exe }), makeCab({ 'b.exe': exe }), makeRar([{ name: 'c.exe', data: exe }])];
    let most = 0;
    const watch = setInterval(() => {
      most = Math.max(most, slots.inUse);
    }, 1);
    const trees = await Promise.all(archives.map((a, i) => walk(`x${i}`, a, {}, u))).finally(() => clearInterval(watch));
    expect(most).toBe(1);
    expect(trees.map((t) => flat(t.node))).toEqual([['2/1 a.exe .exe,.exe-ms'], ['2/1 b.exe .exe,.exe-ms'], ['2/1 c.exe .exe,.exe-ms']]);
  });
});

describe('decoders.formats', () => {
  it('offers exactly the formats the unpacker reads, all on by default', () => {
    const formats = mainConfigSchema.properties.decoders.properties.formats;
    expect(formats.items.enum).toEqual(EXTERNAL_FORMATS);
    expect(formats.default).toEqual(EXTERNAL_FORMATS);
  });
});

describe('process slots', () => {
  it('hands a freed slot to the next waiter, and a waiter whose signal aborts leaves the queue', async () => {
    const slots = new ProcessSlots();
    const never = new AbortController().signal;
    const first = await slots.acquire(1, never);
    const ac = new AbortController();
    const gone = slots.acquire(1, ac.signal);
    let secondIn = false;
    const second = slots.acquire(1, never).then((release) => {
      secondIn = true;
      return release;
    });
    ac.abort(new Error('timed out'));
    await expect(gone).rejects.toThrow('timed out');
    expect(secondIn).toBe(false);
    first();
    first(); // a second release of the same slot is a no-op
    const release = await second;
    expect(secondIn).toBe(true);
    release();
    // All free again: two can be taken at max 2 without waiting.
    const a = await slots.acquire(2, never);
    const b = await slots.acquire(2, never);
    a();
    b();
  });

  it('does not hand a slot to a waiter whose signal aborted before it resumed: it rejects and the slot is free', async () => {
    const slots = new ProcessSlots();
    const first = await slots.acquire(1, new AbortController().signal);
    const ac = new AbortController();
    const second = slots.acquire(1, ac.signal);
    // The slot passes to the waiter in release(); the stage times out before the waiter runs on.
    first();
    ac.abort(new Error('timed out'));
    await expect(second).rejects.toThrow('timed out');
    expect(slots.inUse).toBe(0);
  });
});
