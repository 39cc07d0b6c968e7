/**
 * The banned stage on messages carrying RAR, 7z, cab, xz and ISO attachments, unpacked by the
 * real lsar and unar: a banned member is refused naming its path; encrypted, damaged and
 * too-large archives are weighed by the bank's settings as a zip's are; without an unpacker
 * (decoders off or not installed) only the archive's own name and type are checked.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { EXTERNAL_FORMATS, ExternalUnpacker, ProcessSlots } from '../../../src/lib/archive/external';
import type { StageDeps } from '../../../src/pipeline/stage';
import { decide } from '../../../src/pipeline/verdict';
import { bannedStage } from '../../../src/stages/banned';
import { compressWith, file, make7z, makeBinHex, makeCab, makeIso, makeRar, makeTar, makeZip, messageWith } from '../../helpers/archives';
import { loadTestBank } from '../../helpers/banks';
import { rulesOf, stageFor, testStageDeps, testTransaction } from '../../helpers/stage-run';

const exe = Buffer.concat([Buffer.from('MZ'), Buffer.alloc(126)]);
let tmp: string;
let deps: StageDeps;
const withoutUnpacker = testStageDeps({ server: '127.0.0.1:9' });

beforeAll(() => {
  tmp = mkdtempSync(path.join(tmpdir(), 'postseal-banned-unar-'));
  const settings = { lsar: '/usr/bin/lsar', unar: '/usr/bin/unar', formats: [...EXTERNAL_FORMATS], timeoutMs: 20000, maxProcesses: 2, tmpDir: tmp };
  deps = { ...withoutUnpacker, unpacker: new ExternalUnpacker(settings, new ProcessSlots()) };
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function check(msg: Buffer, banned: Record<string, unknown> = {}, d: StageDeps = deps) {
  const bank = loadTestBank({ stages: ['banned'], banned });
  const { findings } = await stageFor(bannedStage, bank, d).run(testTransaction(msg, { bank }), new AbortController().signal);
  return { findings, verdict: decide(findings, rulesOf(bank)), codes: findings.map((f) => f.code) };
}

describe('banned stage, archives read by unar', () => {
  it('rejects invoice.pdf.exe inside a RAR, naming the member path', async () => {
    const rar = makeRar([
      { name: 'readme.txt', data: 'hello\r\n' },
      { name: 'invoice.pdf.exe', data: 'not really a program' },
    ]);
    const r = await check(messageWith([file('documents.rar', rar, 'application/vnd.rar')]));
    expect(r.codes).toEqual(['BANNED_FILE']);
    expect(r.findings[0].detail).toMatch(/^\[\.exe\] part 2\/2 name "invoice\.pdf\.exe"/);
    expect(r.verdict.reply.text).toBe('Message content rejected: banned content (.exe)');
  });

  it('rejects a Windows program named photo.jpg inside a 7z inside a zip, by its type', async () => {
    const zip = makeZip({ 'photos.7z': make7z({ 'photo.jpg': exe }) });
    const r = await check(messageWith([file('photos.zip', zip, 'application/zip')]));
    expect(r.codes).toEqual(['BANNED_FILE']);
    expect(r.findings[0].detail).toMatch(/^\[\.exe-ms\] part 2\/1\/1 name "photo\.jpg"/);
  });

  it('rejects a shortcut in an ISO image and a script in a cab', async () => {
    for (const [name, data] of [
      ['disk.iso', makeIso({ 'invoice.lnk': 'x' })],
      ['setup.cab', makeCab({ 'run.js': 'x' })],
      ['tool.exe.xz', compressWith('xz', 'x')],
    ] as const) {
      const r = await check(messageWith([file(name, data)]));
      expect(r.codes).toEqual(['BANNED_FILE']);
      expect(r.findings[0].detail).toMatch(/part 2\/1 /);
    }
  });

  it('rejects a program in BinHex inside a text part, as mail from a classic Mac carried it', async () => {
    const msg = messageWith([
      { type: 'application/mac-binhex40; name="files.hqx"', disposition: 'attachment; filename="files.hqx"', data: makeBinHex('setup.scr', 'x'), encoding: '7bit' },
    ]);
    const r = await check(msg);
    expect(r.codes).toEqual(['BANNED_FILE']);
    expect(r.findings[0].detail).toMatch(/part 2\/1 name "setup\.scr"/);
  });

  it('rejects a program in BinHex after other text in a message without MIME (Thunderbird decodes it there)', async () => {
    const msg = Buffer.from(
      `From: a@example.com\r\nTo: b@example.org\r\nSubject: t\r\n\r\nHere it is:\r\n\r\n${makeBinHex('setup.scr', 'x').toString('latin1')}\r\nbye\r\n`,
      'latin1',
    );
    const r = await check(msg);
    expect(r.codes).toEqual(['BANNED_FILE']);
    expect(r.findings[0].detail).toMatch(/part 1\/1\/1 name "setup\.scr"/);
  });

  it('passes a 7z of documents, having looked inside', async () => {
    const r = await check(messageWith([file('report.7z', make7z({ 'report.pdf': '%PDF-1.7\n...', 'data.csv': 'a,b\n1,2\n' }), 'application/x-7z-compressed')]));
    expect(r.codes).toEqual([]);
    expect(r.verdict.action).toBe('pass');
  });

  it('checks the names a 7z with encrypted names hides only by `encrypted`: allowed by default, banned when set', async () => {
    const msg = messageWith([file('secret.7z', make7z({ 'x.exe': exe }, { password: 'pw', encryptNames: true }))]);
    const allowed = await check(msg);
    expect(allowed.codes).toEqual(['BANNED_ENCRYPTED']);
    expect(allowed.verdict.action).toBe('pass');
    const banned = await check(msg, { encrypted: 'banned' });
    expect(banned.verdict.reply.text).toBe('Message content rejected: banned content (encrypted archive)');
  });

  it('still bans an encrypted RAR member by its name', async () => {
    const r = await check(messageWith([file('a.rar', makeRar([{ name: 'payload.scr', data: 'x', encrypted: true }]))]));
    expect(r.codes).toEqual(['BANNED_FILE', 'BANNED_ENCRYPTED']);
    expect(r.findings[0].detail).toMatch(/part 2\/1 name "payload\.scr"/);
  });

  it('calls a damaged 7z a damaged archive: banned by default (onLimit), delivered with the finding when allowed', async () => {
    const seven = make7z({ 'a.txt': 'hello '.repeat(1000) });
    const msg = messageWith([file('a.7z', seven.subarray(0, seven.length - 40), 'application/octet-stream')]);
    const r = await check(msg);
    expect(r.codes).toEqual(['BANNED_UNDECIPHERABLE', 'BANNED_FILE']);
    expect(r.verdict.reply.text).toBe('Message content rejected: banned content (damaged archive)');
    expect((await check(msg, { onLimit: 'allowed' })).verdict.action).toBe('pass');
  });

  it('delivers a RAR too large to unpack whole unchecked, with the alert field, by default', async () => {
    const rar = makeRar([
      { name: 'big.bin', data: Buffer.alloc(3 * 1024 * 1024) },
      { name: 'late.dat', data: exe },
    ]);
    const r = await check(messageWith([file('a.rar', rar)]), { limits: { maxTotalBytes: 1024 * 1024 } });
    expect(r.codes).toEqual(['BANNED_LIMIT_EXCEEDED', 'BANNED_UNCHECKED']);
    expect(r.verdict.action).toBe('tag');
  });

  it('bans, not delivers unchecked, a zip in a 7z padded to be too big to look into; a 7z of a zip that is only large is still delivered unchecked', async () => {
    // A random KB repeated 2100 times, stored in the zip: 7-Zip packs it some 70:1, under the bomb ratio.
    const block = randomBytes(1000);
    const padded = makeZip({ 'pad.bin': Buffer.concat(Array.from({ length: 2100 }, () => block)), 'invoice.pdf.exe': exe }, { store: true });
    const r = await check(messageWith([file('docs.7z', make7z({ 'docs.zip': padded }))]), { limits: { maxMemberBytes: 1024 * 1024 } });
    expect(r.findings.find((f) => f.code === 'BANNED_LIMIT_EXCEEDED')?.detail).toMatch(/part 2\/1 name "docs\.zip".*: ratio limit/);
    expect(r.verdict.reply.text).toBe('Message content rejected: banned content (archive limit exceeded)');
    const large = makeZip({ 'photo.raw': randomBytes(1024 * 1024 + 4096) }, { store: true });
    const honest = await check(messageWith([file('photos.7z', make7z({ 'photos.zip': large }))]), { limits: { maxMemberBytes: 1024 * 1024 } });
    expect(honest.codes).toEqual(['BANNED_LIMIT_EXCEEDED', 'BANNED_UNCHECKED']);
    expect(honest.verdict.action).toBe('tag');
  });

  it('bans a program after padding in a .tar.xz too big to look into: the tar is read as unar writes it', async () => {
    // Fresh random bytes in each block: about 7.5:1, no bomb and no padded compressed archive.
    const pad = Buffer.concat(Array.from({ length: 1100 }, () => Buffer.concat([randomBytes(125), Buffer.alloc(875)])));
    const txz = compressWith('xz', makeTar({ 'pad.bin': pad, 'invoice.pdf.exe': exe }));
    const r = await check(messageWith([file('docs.tar.xz', txz)]), { limits: { maxMemberBytes: 1024 * 1024 } });
    expect(r.findings.find((f) => f.code === 'BANNED_FILE')?.detail).toMatch(/part 2\/1\/2 name "invoice\.pdf\.exe" type \.exe/);
    expect(r.verdict.action).toBe('reject');
  });

  it('rejects a program in a RAR behind a text prefix, named .rar (WinRAR opens it), and passes such a file without an unpacker', async () => {
    const rar = Buffer.concat([Buffer.from('Please find the scanned documents attached.\r\n'.repeat(40)), makeRar([{ name: 'scan.pdf.exe', data: exe }])]);
    const msg = messageWith([file('scan.rar', rar, 'application/vnd.rar')]);
    const r = await check(msg);
    expect(r.codes).toEqual(['BANNED_FILE']);
    expect(r.findings[0].detail).toMatch(/part 2\/1 name "scan\.pdf\.exe"/);
    expect((await check(msg, {}, withoutUnpacker)).codes).toEqual([]);
  });

  it('bans an ISO image with a UDF file system by default (its UDF files are not read), with its ISO 9660 files still checked', async () => {
    const iso = makeIso({ 'readme.txt': 'hi\n', 'evil.exe': exe }, { udf: true, joliet: false, hide: ['evil.exe'] });
    const r = await check(messageWith([file('disk.iso', iso)]));
    expect(r.codes).toEqual(['BANNED_UNDECIPHERABLE', 'BANNED_FILE']);
    expect(r.findings[0].detail).toMatch(/UDF/);
    expect(r.verdict.reply.text).toBe('Message content rejected: banned content (damaged archive)');
  });

  it('delivers the archives past maxUnarArchives unchecked, with the alert field, by default', async () => {
    const seven = make7z({ 'a.txt': 'x' });
    const msg = messageWith([file('a.7z', seven), file('b.7z', seven), file('c.7z', make7z({ 'c.exe': exe }))]);
    const r = await check(msg, { limits: { maxUnarArchives: 2 } });
    expect(r.codes).toEqual(['BANNED_LIMIT_EXCEEDED', 'BANNED_UNCHECKED']);
    expect(r.findings[0].detail).toMatch(/name "c\.7z".*archives limit/);
    expect(r.verdict.action).toBe('tag');
  });

  it('without an unpacker checks a RAR by its own name and type only, as before', async () => {
    const rar = makeRar([{ name: 'invoice.pdf.exe', data: 'x' }]);
    const msg = messageWith([file('documents.rar', rar)]);
    expect((await check(msg, {}, withoutUnpacker)).codes).toEqual([]);
    const byType = await check(msg, { rules: [{ deny: '^\\.rar$', on: 'type' }] }, withoutUnpacker);
    expect(byType.codes).toEqual(['BANNED_FILE']);
  });
});
