/**
 * The banned stage on whole messages, archives made by the real zip, tar and gzip: names,
 * name tricks, detected types, archives inside archives, lovers, bypass, and the verdict
 * (reply text) each gives.
 */
import { decide } from '../../../src/pipeline/verdict';
import { bannedStage } from '../../../src/stages/banned';
import type { Transaction } from '../../../src/transaction/transaction';
import { elfExecutable, file, makeGzip, makeTarGz, makeTnef, makeZip, messageWith, peExecutable } from '../../helpers/archives';
import { loadTestBank } from '../../helpers/banks';
import { rulesOf, stageFor, testStageDeps, testTransaction } from '../../helpers/stage-run';

const deps = testStageDeps({ server: '127.0.0.1:9' });

async function check(msg: Buffer, overlay: Record<string, unknown> = {}, rcpts?: string[]) {
  // A notify target, as a bank with a bounce destiny needs one (config/load.ts).
  const bank = loadTestBank({ stages: ['banned'], notify: { host: '127.0.0.1', port: 10027 }, ...overlay });
  const tx: Transaction = testTransaction(msg, { bank });
  if (rcpts) Object.assign(tx.envelope, { recipients: rcpts.map((address) => ({ address })) });
  const { findings } = await stageFor(bannedStage, bank, deps).run(tx, new AbortController().signal);
  return { findings, verdict: decide(findings, rulesOf(bank)), codes: findings.map((f) => f.code) };
}

describe('banned stage', () => {
  it('rejects invoice.pdf.exe attached directly, naming the kind and not the file name', async () => {
    const r = await check(messageWith([file('invoice.pdf.exe', 'just text, not a program')]));
    expect(r.codes).toContain('BANNED_FILE');
    expect(r.verdict.action).toBe('reject');
    expect(r.verdict.reply).toMatchObject({ code: '554', enhanced: '5.7.0' });
    expect(r.verdict.reply.text).toBe('Message content rejected: banned content (.exe)');
    expect(r.findings[0].detail).toMatch(/part 2 name "invoice.pdf.exe".*rule 1 deny/);
  });

  it('rejects invoice.pdf.exe inside a zip inside a multipart message, naming the member path', async () => {
    const zip = makeZip({ 'readme.txt': 'hello', 'invoice.pdf.exe': 'not really a program' });
    const r = await check(messageWith([file('documents.zip', zip, 'application/zip')]));
    const banned = r.findings.filter((f) => f.code === 'BANNED_FILE');
    expect(banned).toHaveLength(1);
    expect(banned[0].detail).toMatch(/^\[\.exe\] part 2\/2 name "invoice\.pdf\.exe"/);
    expect(r.verdict.reply.text).toContain('(.exe)');
  });

  it('finds a zip inside a zip inside a message/rfc822 part', async () => {
    const inner = makeZip({ 'run.scr': 'x' });
    const outer = makeZip({ 'inner.zip': inner });
    const attached = messageWith([file('outer.zip', outer, 'application/zip')]).toString('latin1');
    const msg = messageWith([{ type: 'message/rfc822', encoding: '7bit', data: attached }]);
    const r = await check(msg);
    const f = r.findings.find((x) => x.code === 'BANNED_FILE');
    expect(f?.detail).toMatch(/^\[\.scr\] part 2\/1\/2\/1\/1 name "run\.scr"/);
  });

  it('bans a name with a right-to-left override (RFC 2231 encoded) and says the name is disguised', async () => {
    const msg = messageWith([{ type: 'application/zip', disposition: "attachment; filename*=utf-8''invoice%E2%80%AEfdp.zip", data: 'plain words' }]);
    const r = await check(msg);
    expect(r.codes).toEqual(expect.arrayContaining(['BANNED_DISGUISED_NAME', 'BANNED_FILE']));
    expect(r.verdict.reply.text).toBe('Message content rejected: banned content (disguised file name)');
    expect(r.findings.find((f) => f.code === 'BANNED_DISGUISED_NAME')?.detail).toContain('\\u{202e}');
  });

  it('passes a disguised name (raw UTF-8 in the header) when the bank allows them, still reporting it', async () => {
    const r = await check(messageWith([file('report\u200B.pdf', '%PDF-1.4')]), { banned: { disguisedNames: 'allowed' } });
    expect(r.codes).toEqual(['BANNED_DISGUISED_NAME']);
    expect(r.verdict.action).toBe('pass');
  });

  it('decodes an RFC 2231 encoded, continued file name before matching', async () => {
    const msg = messageWith([
      {
        type: 'application/octet-stream',
        disposition: "attachment; filename*0*=utf-8''Rechnung%20M%C3%A4rz; filename*1*=.pdf.; filename*2*=%65xe",
        data: 'x',
      },
    ]);
    const r = await check(msg);
    expect(r.findings.find((f) => f.code === 'BANNED_FILE')?.detail).toMatch(/name "Rechnung März\.pdf\.exe"/);
  });

  it('decodes an RFC 2047 encoded Content-Type name before matching', async () => {
    const name = `=?UTF-8?B?${Buffer.from('facture.pdf.exe').toString('base64')}?=`;
    const r = await check(messageWith([{ type: `application/pdf; name="${name}"`, data: 'x' }]));
    expect(r.verdict.reply.text).toContain('(.exe)');
  });

  it('reads a file name on a header line far longer than 998 octets whole', async () => {
    const name = `${'a'.repeat(3000)}.pdf.exe`;
    const r = await check(messageWith([{ type: 'application/octet-stream', disposition: `attachment; filename="${name}"`, data: 'x' }]));
    expect(r.verdict.reply.text).toContain('(.exe)');
  });

  it('bans a part whose name field is too long to read rather than match a cut name', async () => {
    const name = `${'a'.repeat(200 * 1024)}.exe`;
    const r = await check(messageWith([{ type: 'application/octet-stream', disposition: `attachment; filename="${name}"`, data: 'x' }]));
    expect(r.findings.find((f) => f.code === 'BANNED_UNDECIPHERABLE')?.detail).toMatch(/content-disposition field longer than/);
    expect(r.verdict.reply.text).toContain('(unreadable part)');
  });

  it('bans trailing dots and spaces that Windows strips (file.exe. and file.exe )', async () => {
    for (const name of ['file.exe.', 'file.exe ', 'FILE.EXE']) {
      const r = await check(messageWith([file(name, 'x')]));
      expect({ name, action: r.verdict.action }).toEqual({ name, action: 'reject' });
    }
  });

  it('bans a Windows program by its bytes, whatever its name and declared type', async () => {
    const r = await check(messageWith([file('holiday.jpg', peExecutable(), 'image/jpeg')]));
    expect(r.findings.find((f) => f.code === 'BANNED_FILE')?.detail).toMatch(/^\[\.exe-ms\] part 2 .*matched type "\.exe-ms"/);
  });

  it("bans by declared type (application/x-msdownload), the reply naming a fixed kind, not the sender's type", async () => {
    const r = await check(messageWith([file('setup', 'x', 'application/x-msdownload')]));
    expect(r.verdict.reply.text).toBe('Message content rejected: banned content (declared type)');
  });

  it('finds an ELF program in a tar.gz with a rule on the detected type', async () => {
    const tgz = makeTarGz({ 'tools/readme': 'hi', 'tools/helper': elfExecutable() });
    const overlay = { banned: { rules: [{ deny: '^\\.exe-unix$', on: 'type' }] } };
    const r = await check(messageWith([file('tools.tar.gz', tgz, 'application/gzip')]), overlay);
    const f = r.findings.find((x) => x.code === 'BANNED_FILE');
    expect(f?.detail).toMatch(/^\[\.exe-unix\] part 2\/1\/2 name "tools\/helper"/);
  });

  it('bans a zip whose local header names an .exe the central directory calls .txt', async () => {
    const zip = makeZip({ 'notes.txt': 'x' }, { store: true });
    const local = zip.indexOf(Buffer.from('notes.txt'));
    zip.write('notes.exe', local, 'latin1');
    const r = await check(messageWith([file('notes.zip', zip, 'application/zip')]));
    expect(r.findings.find((x) => x.code === 'BANNED_FILE')?.detail).toMatch(/part 2\/1 name "notes\.txt".*matched name "notes\.exe"/);
  });

  it('names the member of a gzip by the name gzip kept in its header', async () => {
    const gz = makeGzip('payload.exe', 'x');
    const r = await check(messageWith([file('payload.gz', gz, 'application/gzip')]));
    expect(r.findings.find((x) => x.code === 'BANNED_FILE')?.detail).toMatch(/part 2\/1 name "payload\.exe"/);
  });

  it('names the member of a gzip by the outer name too (what gunzip writes)', async () => {
    const gz = makeGzip('harmless.txt', 'x');
    const r = await check(messageWith([file('setup.exe.gz', gz, 'application/gzip')]));
    expect(r.findings.find((x) => x.code === 'BANNED_FILE')?.detail).toMatch(/part 2\/1 name "harmless\.txt".*matched name "setup\.exe"/);
  });

  it('passes allowed types: a PDF, a docx-like zip, a text part', async () => {
    const docx = makeZip({ '[Content_Types].xml': '<Types/>', '_rels/.rels': '<Relationships/>', 'word/document.xml': '<w:document/>' });
    const r = await check(messageWith([file('report.pdf', '%PDF-1.7\n...', 'application/pdf'), file('letter.docx', docx)]));
    expect(r.codes).toEqual([]);
    expect(r.verdict.action).toBe('pass');
  });

  it('lets an allow rule before the deny rules pass everything inside a zip (amavisd [qr/^\\.zip$/ => 0])', async () => {
    const zip = makeZip({ 'tool.exe': 'x' });
    const overlay = {
      banned: {
        rules: [
          { allow: '^\\.zip$', on: 'type' },
          { deny: '\\.exe$', on: 'name' },
        ],
      },
    };
    expect((await check(messageWith([file('tools.zip', zip)]), overlay)).verdict.action).toBe('pass');
  });

  it('tags instead of rejecting when every recipient is a banned-files lover', async () => {
    const r = await check(messageWith([file('a.exe', 'x')]), { banned: { lovers: ['example.net'] } });
    expect(r.codes).toContain('BANNED_FILE_LOVED');
    expect(r.verdict.action).toBe('tag');
    expect(r.verdict.fields).toEqual([{ name: 'X-Postseal-Alert', value: 'BANNED, message contains .exe (part 2)' }]);
  });

  it('rejects when only some recipients are lovers (the strict side)', async () => {
    const r = await check(messageWith([file('a.exe', 'x')]), { banned: { lovers: ['lover@example.net'] } }, ['lover@example.net', 'other@example.net']);
    expect(r.verdict.action).toBe('reject');
  });

  it('does no work when every recipient bypasses banned checks', async () => {
    const r = await check(messageWith([file('a.exe', 'x')]), { banned: { bypass: ['.'] } });
    expect(r.codes).toEqual(['BANNED_BYPASSED']);
    expect(r.verdict.action).toBe('pass');
  });

  it('discards, bounces or quarantines when the destiny says so', async () => {
    for (const destiny of ['discard', 'bounce', 'quarantine']) {
      const r = await check(messageWith([file('a.exe', 'x')]), { banned: { destiny } });
      expect({ destiny, action: r.verdict.action }).toEqual({ destiny, action: destiny });
    }
  });

  it('reports an encrypted zip member, allowed by default and banned when the bank says so', async () => {
    const zip = makeZip({ 'statement.pdf': '%PDF-1.4 secret' }, { password: 'pw' });
    const msg = messageWith([file('statement.zip', zip, 'application/zip')]);
    const allowed = await check(msg);
    expect(allowed.codes).toEqual(['BANNED_ENCRYPTED']);
    expect(allowed.findings[0].detail).toMatch(/part 2\/1 name "statement\.pdf"/);
    expect(allowed.verdict.action).toBe('pass');
    const banned = await check(msg, { banned: { encrypted: 'banned' } });
    expect(banned.verdict.reply.text).toContain('(encrypted archive)');
  });

  it('still bans an executable name inside an encrypted zip (the directory is not encrypted)', async () => {
    const zip = makeZip({ 'invoice.exe': 'x' }, { password: 'pw' });
    const r = await check(messageWith([file('invoice.zip', zip, 'application/zip')]));
    expect(r.verdict.reply.text).toContain('(.exe)');
  });

  describe('winmail.dat (TNEF)', () => {
    const winmail = (parts: Parameters<typeof makeTnef>[0]) => messageWith([file('winmail.dat', makeTnef(parts), 'application/ms-tnef')]);

    it('rejects invoice.pdf.exe in an Outlook winmail.dat, naming the attachment path', async () => {
      const r = await check(
        winmail([
          { title: 'notes.txt', data: 'hi' },
          { title: 'INVOIC~1.EXE', longName: 'invoice.pdf.exe', data: 'text' },
        ]),
      );
      expect(r.codes).toEqual(['BANNED_FILE']);
      expect(r.findings[0].detail).toMatch(/^\[\.exe\] part 2\/2 name "INVOIC~1\.EXE"/);
    });

    it('rejects a program named report.doc by its bytes, and one in a zip inside the winmail.dat', async () => {
      expect((await check(winmail([{ longName: 'report.doc', data: peExecutable(), dataIn: 'binary' }]))).verdict.reply.text).toContain('(.exe-ms)');
      const r = await check(winmail([{ title: 'docs.zip', data: makeZip({ 'run.exe': 'x' }) }]));
      expect(r.findings[0].detail).toMatch(/part 2\/1\/1 name "run\.exe"/);
    });

    it('checks both copies when an attachment carries two different ones (one per client)', async () => {
      const r = await check(winmail([{ title: 'notes.txt', data: 'plain notes', alsoBinary: peExecutable() }]));
      expect(r.codes).toEqual(['BANNED_FILE']);
      expect(r.findings[0].detail).toMatch(/^\[\.exe-ms\] part 2\/2 name "notes\.txt"/);
    });

    it("rejects a program in a zip whose attAttachData ID carries another type word (Debian's tnef extracts it all the same)", async () => {
      const stream = Buffer.from(makeTnef([{ title: 'docs.zip', data: makeZip({ 'run.exe': 'x' }) }]));
      stream.writeUInt16LE(0x0001, stream.indexOf(Buffer.from([0x0f, 0x80, 0x06, 0x00])) + 2);
      const r = await check(messageWith([file('winmail.dat', stream, 'application/ms-tnef')]));
      expect(r.findings[0].detail).toMatch(/part 2\/1\/1 name "run\.exe"/);
    });

    it('passes a winmail.dat of ordinary documents, and calls a cut one a damaged archive', async () => {
      const ok = winmail([{ title: 'agenda.txt', longName: 'Agenda for Monday.txt', data: 'items' }]);
      expect((await check(ok)).codes).toEqual([]);
      const stream = makeTnef([{ title: 'agenda.txt', data: 'items' }]);
      const cut = messageWith([file('winmail.dat', stream.subarray(0, stream.length - 9), 'application/ms-tnef')]);
      const r = await check(cut);
      expect(r.codes).toEqual(['BANNED_UNDECIPHERABLE', 'BANNED_FILE']);
      expect(r.verdict.reply.text).toContain('(damaged archive)');
    });
  });
});
