/**
 * The banned stage's caps: zip bombs (declared and hidden ratio), nesting, member count, a
 * damaged archive, and a 10,000-part message whose work is counted (no clocks).
 */
import { randomBytes } from 'node:crypto';
import { Budget } from '../../../src/lib/archive/expand';
import { messageContent } from '../../../src/lib/mime/parts';
import { settingsOf } from '../../../src/pipeline/runner';
import { decide } from '../../../src/pipeline/verdict';
import { bannedStage } from '../../../src/stages/banned';
import { inspect } from '../../../src/stages/banned/inspect';
import { compileRules } from '../../../src/stages/banned/rules';
import { file, makeGzip, makeTar, makeTarGz, makeZip, messageWith, peExecutable, storedGzip, uuencode } from '../../helpers/archives';
import { loadTestBank } from '../../helpers/banks';
import { rulesOf, stageFor, testStageDeps, testTransaction } from '../../helpers/stage-run';

const deps = testStageDeps({ server: '127.0.0.1:9' });
const MiB = 1024 * 1024;

async function check(msg: Buffer, banned: Record<string, unknown> = {}) {
  const bank = loadTestBank({ stages: ['banned'], banned });
  const { findings } = await stageFor(bannedStage, bank, deps).run(testTransaction(msg, { bank }), new AbortController().signal);
  return { findings, verdict: decide(findings, rulesOf(bank)), codes: findings.map((f) => f.code) };
}

describe('banned stage limits', () => {
  // A bomb is an archive to unpack whole: a tar of zeros in a zip.
  const bomb = makeZip({ 'zeros.tar': makeTar({ 'zeros.bin': Buffer.alloc(20 * MiB) }) });

  it('stops at a zip bomb by its declared ratio, without inflating it, and bans it', async () => {
    expect(bomb.length).toBeLessThan(100 * 1024);
    const r = await check(messageWith([file('bomb.zip', bomb, 'application/zip')]));
    expect(r.findings.find((f) => f.code === 'BANNED_LIMIT_EXCEEDED')?.detail).toMatch(/part 2\/1 name "zeros\.tar".*: ratio limit/);
    expect(r.verdict.reply.text).toBe('Message content rejected: banned content (archive limit exceeded)');
  });

  it('stops a tar.gz bomb while inflating it (gzip declares no size), at the ratio cap', async () => {
    const tgz = makeTarGz({ 'big.log': Buffer.alloc(30 * MiB) });
    const msg = messageWith([file('logs.tar.gz', tgz, 'application/gzip')]);
    const bank = loadTestBank({});
    const content = await messageContent(testTransaction(msg, { bank }).message, settingsOf(bannedStage, bank).limits, new AbortController().signal);
    const gz = content.root.children[1];
    expect(gz.children[0].limit).toBe('ratio');
    // Stopped within a slice of the cap: ratio 200 over the compressed size, not 30 MiB.
    expect(content.budget.inflatedBytes).toBeLessThan(200 * tgz.length + 2 * MiB);
  });

  it('delivers an archive a cap stopped when onLimit is allowed, with the finding for the log', async () => {
    const r = await check(messageWith([file('bomb.zip', bomb, 'application/zip')]), { onLimit: 'allowed' });
    expect(r.codes).toEqual(['BANNED_LIMIT_EXCEEDED']);
    expect(r.verdict.action).toBe('pass');
  });

  it('passes a zip of a highly compressible log: only members unpacked whole (archives) are held to the ratio', async () => {
    const zip = makeZip({ 'server.log': '2026-12-07 00:00:00 INFO ok\n'.repeat(80000) });
    expect(zip.length).toBeLessThan(16 * 1024);
    const r = await check(messageWith([file('logs.zip', zip, 'application/zip')]));
    expect(r.codes).toEqual([]);
    expect(r.verdict.action).toBe('pass');
  });

  it('does not count the members of documents in a zip (a zip of docx files) toward the member cap', async () => {
    const docx = makeZip({ '[Content_Types].xml': '<Types/>', '_rels/.rels': '<R/>', 'word/document.xml': '<w/>', 'word/styles.xml': '<s/>' });
    const zip = makeZip(Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`contract${i}.docx`, docx])));
    const r = await check(messageWith([file('contracts.zip', zip, 'application/zip')]), { limits: { maxMembers: 30 } });
    expect(r.codes).toEqual([]);
    expect(r.verdict.action).toBe('pass');
  });

  it('delivers an archive too big to look into with X-Postseal-Alert: UNCHECKED, or bans it when onTooLarge says so', async () => {
    const text = Array.from({ length: 20000 }, (_, j) => `int v${j} = ${(j * 7919) % 10007}; /* ${randomBytes(6).toString('hex')} */`).join('\n');
    const tgz = makeTarGz({ 'src.c': text });
    const msg = messageWith([file('src.tar.gz', tgz, 'application/gzip')]);
    const r = await check(msg, { limits: { maxMemberBytes: 65536 } });
    expect(r.codes).toEqual(['BANNED_LIMIT_EXCEEDED', 'BANNED_UNCHECKED']);
    expect(r.verdict.action).toBe('tag');
    expect(r.verdict.fields).toEqual([{ name: 'X-Postseal-Alert', value: 'UNCHECKED, too large to check (part 2)' }]);
    const banned = await check(msg, { limits: { maxMemberBytes: 65536 }, onTooLarge: 'banned' });
    expect(banned.verdict.reply.text).toBe('Message content rejected: banned content (too large to check)');
  });

  it('bans, not delivers unchecked, a uuencoded archive past maxMemberBytes only because trimmed lines before it decode to more than their text', async () => {
    // A harmless zip of zeros whose lines are cut to their length character ("M": 45 zero bytes, as
    // Thunderbird pads them) fills the part's maxMemberBytes from a few KB; the zip after it would be too big.
    const harmless = makeZip({ 'z.bin': Buffer.alloc(MiB - 200) }, { store: true });
    const evil = makeZip({ 'invoice.pdf.exe': 'MZ' });
    expect(harmless.length).toBeLessThan(MiB);
    expect(harmless.length + evil.length).toBeGreaterThan(MiB);
    // Plain text after them, read in the same piece, hides nothing.
    const text = `${uuencode('a.zip', harmless).replace(/^M`{60}$/gm, 'M')}${uuencode('b.zip', evil)}${'regards\n'.repeat(140000)}`.replace(/\n/g, '\r\n');
    expect(text.length).toBeLessThan(1.5 * MiB);
    const msg = messageWith([{ type: 'text/plain; charset=us-ascii', data: text, encoding: '7bit' }]);
    const r = await check(msg, { limits: { maxMemberBytes: MiB } });
    expect(r.findings.find((f) => f.code === 'BANNED_LIMIT_EXCEEDED')?.detail).toMatch(/part 2\/2 name "b\.zip".*: ratio limit/);
    expect(r.verdict.action).toBe('reject');
  });

  it('still delivers unchecked an honest uuencoded archive too big to look into (onTooLarge)', async () => {
    const big = makeZip({ 'data.bin': randomBytes(200 * 1024) }, { store: true });
    const text = `${uuencode('a.zip', big)}`.replace(/\n/g, '\r\n');
    const r = await check(messageWith([{ type: 'text/plain; charset=us-ascii', data: text, encoding: '7bit' }]), { limits: { maxMemberBytes: 65536 } });
    expect(r.codes).toEqual(['BANNED_LIMIT_EXCEEDED', 'BANNED_UNCHECKED']);
    expect(r.verdict.action).toBe('tag');
  });

  it('bans, not delivers unchecked, a zip in a zip too big to look into only because it was padded to compress (a ratio under the bomb cap)', async () => {
    // Stored padding that deflates about 70:1 (a random KB repeated): under maxRatio 200, so no
    // bomb, but 2 MiB out of a message of a few dozen KB fills maxMemberBytes before the program.
    const block = randomBytes(1000);
    const inner = makeZip({ 'pad.bin': Buffer.concat(Array.from({ length: 2100 }, () => block)), 'invoice.pdf.exe': 'MZ' }, { store: true });
    const outer = makeZip({ 'docs.zip': inner });
    expect(outer.length).toBeLessThan(100 * 1024);
    const r = await check(messageWith([file('docs.zip', outer, 'application/zip')]), { limits: { maxMemberBytes: MiB } });
    expect(r.findings.find((f) => f.code === 'BANNED_LIMIT_EXCEEDED')?.detail).toMatch(/part 2\/1 name "docs\.zip".*: ratio limit/);
    expect(r.verdict.action).toBe('reject');
  });

  it('still delivers unchecked a zip in a zip too big to look into whose bytes do not compress, and a tar that does', async () => {
    const inner = makeZip({ 'photo.raw': randomBytes(MiB + 4096) }, { store: true });
    const zipped = await check(messageWith([file('docs.zip', makeZip({ 'inner.zip': inner }), 'application/zip')]), { limits: { maxMemberBytes: MiB } });
    expect(zipped.codes).toEqual(['BANNED_LIMIT_EXCEEDED', 'BANNED_UNCHECKED']);
    expect(zipped.verdict.action).toBe('tag');
    // A tar is not compressed: logs.tar in a zip may shrink a lot and is still only large.
    const logs = makeTar({ 'app.log': Array.from({ length: 40000 }, (_, i) => `2026-12-07 line ${i} ok ${randomBytes(4).toString('hex')}\n`).join('') });
    const tarred = await check(messageWith([file('logs.zip', makeZip({ 'logs.tar': logs }), 'application/zip')]), { limits: { maxMemberBytes: MiB } });
    expect(tarred.findings.find((f) => f.code === 'BANNED_LIMIT_EXCEEDED')?.detail).toMatch(/size limit/);
    expect(tarred.verdict.action).toBe('tag');
  });

  it('bans a padded zip in a zip whose padding is in front of it (not a zip by its first bytes, as unzip still opens it)', async () => {
    // unzip and 7-Zip find a zip by its end record: 2 MiB of bytes before it are skipped.
    const block = randomBytes(1000);
    const inner = Buffer.concat([...Array.from({ length: 2100 }, () => block), makeZip({ 'invoice.pdf.exe': 'MZ' })]);
    const outer = makeZip({ 'docs.zip': inner });
    expect(outer.length).toBeLessThan(100 * 1024);
    const r = await check(messageWith([file('docs.zip', outer, 'application/zip')]), { limits: { maxMemberBytes: MiB } });
    expect(r.findings.find((f) => f.code === 'BANNED_LIMIT_EXCEEDED')?.detail).toMatch(/part 2\/1 name "docs\.zip".*: ratio limit/);
    expect(r.verdict.action).toBe('reject');
  });

  it('bans a .tar.gz padded past maxMemberBytes by the program after the padding: a tar too big to hold is read as it streams', async () => {
    const block = randomBytes(1000);
    const tgz = makeTarGz({ 'pad.bin': Buffer.concat(Array.from({ length: 2100 }, () => block)), 'invoice.pdf.exe': peExecutable() });
    expect(tgz.length).toBeLessThan(20 * 1024);
    const r = await check(messageWith([file('docs.tar.gz', tgz, 'application/gzip')]), { limits: { maxMemberBytes: MiB } });
    expect(r.findings.find((f) => f.code === 'BANNED_FILE')?.detail).toMatch(/part 2\/1\/2 name "invoice\.pdf\.exe" type \.exe/);
    expect(r.verdict.action).toBe('reject');
    // The same in a zip (docs.tar deflated).
    const z = makeZip({ 'docs.tar': makeTar({ 'pad.bin': Buffer.concat(Array.from({ length: 2100 }, () => block)), 'invoice.pdf': peExecutable() }) });
    const zipped = await check(messageWith([file('docs.zip', z, 'application/zip')]), { limits: { maxMemberBytes: MiB } });
    expect(zipped.findings.find((f) => f.code === 'BANNED_FILE')?.detail).toMatch(/part 2\/1\/2 name "invoice\.pdf" type \.exe/);
    expect(zipped.verdict.action).toBe('reject');
  });

  it('bans a padded zip in a zip whose member is over maxMemberBytes / 8 by the name of the program after the padding', async () => {
    // Fresh random bytes in each block: about 7.5:1, under INNER_ARCHIVE_RATIO, so only size.
    const pad = Buffer.concat(Array.from({ length: 2100 }, () => Buffer.concat([randomBytes(125), Buffer.alloc(875)])));
    const outer = makeZip({ 'docs.zip': makeZip({ 'pad.bin': pad, 'invoice.pdf.exe': peExecutable() }, { store: true }) });
    const r = await check(messageWith([file('docs.zip', outer, 'application/zip')]), { limits: { maxMemberBytes: MiB } });
    expect(r.findings.find((f) => f.code === 'BANNED_LIMIT_EXCEEDED')?.detail).toMatch(/part 2\/1 name "docs\.zip".*: size limit/);
    expect(r.findings.find((f) => f.code === 'BANNED_FILE')?.detail).toMatch(/part 2\/1\/2 name "invoice\.pdf\.exe" type \.exe/);
    expect(r.verdict.action).toBe('reject');
  });

  // Fresh random bytes in each block: about 7.5:1, under the padding rule's 8, so only `size`.
  const underEight = () => Buffer.concat(Array.from({ length: 1100 }, () => Buffer.concat([randomBytes(125), Buffer.alloc(875)])));

  it('bans a padded .tar.gz inside a .gz by the program after the padding: the inner gzip is inflated as it streams past', async () => {
    // The inner gzip stores its data (deflate level 0), so it is as large as its tar; the outer gzip compresses it under 8:1.
    const inner = storedGzip('docs.tar', makeTar({ 'pad.bin': underEight(), 'invoice.pdf.exe': peExecutable() }));
    const outer = makeGzip('docs.tar.gz', inner);
    expect(inner.length).toBeGreaterThan(MiB);
    expect(inner.length).toBeLessThan(8 * outer.length);
    const r = await check(messageWith([file('archive.gz', outer, 'application/gzip')]), { limits: { maxMemberBytes: MiB } });
    expect(r.findings.find((f) => f.code === 'BANNED_LIMIT_EXCEEDED')?.detail).toMatch(/part 2\/1 name "docs\.tar\.gz".*: size limit/);
    expect(r.findings.find((f) => f.code === 'BANNED_FILE')?.detail).toMatch(/part 2\/1\/1\/2 name "invoice\.pdf\.exe" type \.exe/);
    expect(r.verdict.action).toBe('reject');
  });

  it("bans the same padded .tar.gz inside a zip, and a program that is the padded gzip's one file, by the name in its header", async () => {
    const tgz = storedGzip('docs.tar', makeTar({ 'pad.bin': underEight(), 'invoice.pdf.exe': peExecutable() }));
    const zipped = await check(messageWith([file('docs.zip', makeZip({ 'docs.tar.gz': tgz }), 'application/zip')]), { limits: { maxMemberBytes: MiB } });
    expect(zipped.findings.find((f) => f.code === 'BANNED_FILE')?.detail).toMatch(/part 2\/1\/1\/2 name "invoice\.pdf\.exe" type \.exe/);
    expect(zipped.verdict.action).toBe('reject');
    // A program padded at its end, gzipped as "invoice.pdf.exe", the gzip named payload.gz (which gunzip -N undoes).
    const program = storedGzip('invoice.pdf.exe', Buffer.concat([peExecutable(), underEight()]));
    const r = await check(messageWith([file('docs.zip', makeZip({ 'payload.gz': program }), 'application/zip')]), { limits: { maxMemberBytes: MiB } });
    expect(r.findings.find((f) => f.code === 'BANNED_FILE')?.detail).toMatch(/part 2\/1\/1 name "invoice\.pdf\.exe"/);
    expect(r.verdict.action).toBe('reject');
  });

  it('still delivers unchecked a large gzip in a zip that holds nothing banned, its tar read to the end', async () => {
    const tgz = storedGzip('photos.tar', makeTar({ 'pad.bin': underEight(), 'photo.jpg': 'not a program' }));
    const content = await messageContent(
      testTransaction(messageWith([file('docs.zip', makeZip({ 'photos.tar.gz': tgz }), 'application/zip')]), { bank: loadTestBank({}) }).message,
      { ...settingsOf(bannedStage, loadTestBank({})).limits, maxMemberBytes: MiB },
      new AbortController().signal,
    );
    const gz = content.root.children[1].children[0];
    expect(gz.limit).toBe('size');
    expect(gz.children[0].names).toEqual(['photos.tar']);
    expect(gz.children[0].children.map((m) => m.names[0])).toEqual(['pad.bin', 'photo.jpg']);
    const r = await check(messageWith([file('docs.zip', makeZip({ 'photos.tar.gz': tgz }), 'application/zip')]), { limits: { maxMemberBytes: MiB } });
    expect(r.codes).toEqual(['BANNED_LIMIT_EXCEEDED', 'BANNED_UNCHECKED']);
    expect(r.verdict.action).toBe('tag');
  });

  it('stops a 10-deep nested zip at the depth cap', async () => {
    let z = makeZip({ 'core.txt': 'hello' });
    for (let level = 9; level >= 1; level--) z = makeZip({ [`level${level}.zip`]: z });
    const r = await check(messageWith([file('nested.zip', z, 'application/zip')]));
    const limit = r.findings.find((f) => f.code === 'BANNED_LIMIT_EXCEEDED');
    // Depth 8 (the default) is walked; the zip inside it is where the walk stopped.
    expect(limit?.detail).toMatch(/^part 2(\/1){8} name "level8\.zip" .*: depth limit$/);
    expect(r.verdict.action).toBe('reject');
  });

  it('walks the same nesting when the bank allows it', async () => {
    let z = makeZip({ 'core.exe': 'x' });
    for (let level = 9; level >= 1; level--) z = makeZip({ [`level${level}.zip`]: z });
    const r = await check(messageWith([file('nested.zip', z, 'application/zip')]), { limits: { maxDepth: 12 } });
    expect(r.findings.find((f) => f.code === 'BANNED_FILE')?.detail).toMatch(/^\[\.exe\] part 2(\/1){10} name "core\.exe"/);
  });

  it('stops at the member cap and reports it', async () => {
    const many = makeZip(Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`f${i}.txt`, 'x'])));
    const r = await check(messageWith([file('many.zip', many)]), { limits: { maxMembers: 10 } });
    expect(r.findings.find((f) => f.code === 'BANNED_LIMIT_EXCEEDED')?.detail).toMatch(/part 2 name "many\.zip".*: members limit/);
  });

  it('bans an archive member whose real size is larger than its directory says (a hidden bomb)', async () => {
    const zip = makeZip({ 'a.txt': 'a'.repeat(5000) });
    const eocd = zip.lastIndexOf(Buffer.from('PK\x05\x06', 'latin1'));
    const cd = zip.readUInt32LE(eocd + 16);
    zip.writeUInt32LE(10, cd + 24);
    const r = await check(messageWith([file('lie.zip', zip)]));
    expect(r.findings.find((f) => f.code === 'BANNED_UNDECIPHERABLE')?.detail).toMatch(/part 2\/1 .*differs from the 10/);
    expect(r.verdict.reply.text).toContain('(damaged archive)');
  });

  it('reports a zip with a truncated central directory as damaged, without a crash', async () => {
    const zip = makeZip({ 'a.txt': 'alpha', 'b.txt': 'beta' });
    const r = await check(messageWith([file('cut.zip', zip.subarray(0, zip.length - 30))]));
    expect(r.codes).toEqual(['BANNED_UNDECIPHERABLE', 'BANNED_FILE']);
  });

  it('checks every part of a 10,000-part message with work linear in the parts', async () => {
    const parts = Array.from({ length: 10000 }, (_, i) => file(i === 9999 ? 'last.exe' : `f${i}.txt`, `part ${i}`, 'text/plain'));
    const bank = loadTestBank({});
    const tx = testTransaction(messageWith(parts), { bank });
    const content = await messageContent(tx.message, settingsOf(bannedStage, bank).limits, new AbortController().signal);
    expect(content.mimeParts).toBe(10002);
    const work = { tests: 0 };
    const rules = compileRules(settingsOf(bannedStage, bank).rules);
    const findings = inspect(content.root, rules, settingsOf(bannedStage, bank), work);
    expect(findings.map((f) => f.code)).toEqual(['BANNED_FILE']);
    expect(findings[0].path).toBe('10001');
    // Each part tries each rule on each of its keys (a name, a declared type, a type) at most once.
    expect(work.tests).toBeLessThanOrEqual(10002 * rules.length * 4);
    expect(content.budget).toBeInstanceOf(Budget);
  });

  it('reports at most 20 banned parts one by one, then how many more; the first decides', async () => {
    const parts = Array.from({ length: 50 }, (_, i) => file(`p${i}.exe`, 'x'));
    const r = await check(messageWith(parts));
    expect(r.codes.filter((c) => c === 'BANNED_FILE')).toHaveLength(1);
    expect(r.codes.filter((c) => c === 'BANNED_FILE_MORE')).toHaveLength(20);
    expect(r.findings.at(-1)?.detail).toBe('30 more not listed');
    expect(r.verdict.reason).toBe('BANNED_FILE');
  });

  it('adds one alert field for a lover, however many parts are banned', async () => {
    const parts = Array.from({ length: 5 }, (_, i) => file(`p${i}.exe`, 'x'));
    const r = await check(messageWith(parts), { lovers: ['.'] });
    expect(r.verdict.fields).toEqual([{ name: 'X-Postseal-Alert', value: 'BANNED, message contains .exe (part 2)' }]);
  });

  it('stops when the stage is aborted (its timeout)', async () => {
    const bank = loadTestBank({ stages: ['banned'] });
    const big = randomBytes(2 * MiB);
    const ac = new AbortController();
    ac.abort(new Error('stage timeout'));
    await expect(stageFor(bannedStage, bank, deps).run(testTransaction(messageWith([file('r.bin', big)]), { bank }), ac.signal)).rejects.toThrow('stage timeout');
  });
});
