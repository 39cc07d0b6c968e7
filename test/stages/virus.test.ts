import net from 'node:net';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Bank } from '../../src/config/bank-schema';
import YAML from 'yaml';
import { isPostsealError } from '../../src/errors';
import { loadConfig } from '../../src/setup';
import { MAX_MIME_PARTS } from '../../src/lib/mime/structure';
import { decide } from '../../src/pipeline/verdict';
import { virusStage } from '../../src/stages/virus';
import { loadTestBank } from '../helpers/banks';
import { EICAR, EICAR_NAME, TEST_VIRUS_MARKER, TEST_VIRUS_NAME, messageWithAttachment, startClamd, zipOf, type ClamdServer } from '../helpers/clamd';
import { startHarness } from '../helpers/postseal';
import { startSink } from '../helpers/sink';
import { TestClient } from '../helpers/smtp-client';
import { rulesOf, stageFor, testStageDeps, testTransaction } from '../helpers/stage-run';

const deps = testStageDeps({ server: '127.0.0.1:9' });
const CLEAN = 'From: <alice@example.org>\r\nTo: <bob@example.net>\r\nSubject: hello\r\n\r\nNothing to see here.\r\n';
const INFECTED = messageWithAttachment({ filename: 'invoice.zip', attachment: zipOf({ 'invoice.pdf.com': EICAR }) });
const nowhere = path.join(mkdtempSync(path.join(tmpdir(), 'postseal-noclamd-')), 'clamd.sock');

let clamd: ClamdServer;
beforeAll(async () => {
  clamd = await startClamd();
}, 30_000);
afterAll(async () => {
  await clamd?.stop();
});

/** The stage of a bank with `virus` settings (over a unix socket to the test's clamd unless they say otherwise), its findings and the verdict. */
async function scan(data: string | Buffer, virus: Record<string, unknown> = {}, opts: { recipients?: string[]; bank?: Record<string, unknown> } = {}) {
  // A notify target, as a bank with a bounce destiny needs one (config/load.ts).
  const bank: Bank = loadTestBank({ stages: ['virus'], notify: { host: '127.0.0.1', port: 10027 }, virus: { socket: clamd.socket, ...virus }, ...opts.bank });
  const base = testTransaction(data, { bank });
  const tx = opts.recipients ? { ...base, envelope: { ...base.envelope, recipients: opts.recipients.map((address) => ({ address })) } } : base;
  const outcome = await stageFor(virusStage, bank, deps).run(tx, new AbortController().signal);
  return { findings: outcome.findings, verdict: decide(outcome.findings, rulesOf(bank)) };
}

describe('the virus stage with a real clamd', () => {
  it('rejects EICAR in a zip inside a multipart message with 554 5.7.0 naming the virus', async () => {
    const { findings, verdict } = await scan(INFECTED);
    expect(findings).toEqual([{ code: 'VIRUS_FOUND', detail: EICAR_NAME }]);
    expect(verdict).toMatchObject({ action: 'reject', reason: 'VIRUS_FOUND', reply: { code: '554', enhanced: '5.7.0', text: `Message rejected: virus found (${EICAR_NAME})` } });
  });

  it('reaches clamd over TCP when host is set', async () => {
    const { findings } = await scan(`${CLEAN}${TEST_VIRUS_MARKER}\r\n`, { host: '127.0.0.1', port: clamd.port, socket: nowhere });
    expect(findings).toEqual([{ code: 'VIRUS_FOUND', detail: TEST_VIRUS_NAME }]);
  });

  it('passes clean mail with X-Virus-Scanned naming our authserv-id', async () => {
    const { findings, verdict } = await scan(CLEAN);
    expect(findings.map((f) => f.code)).toEqual(['VIRUS_CLEAN']);
    expect(verdict).toMatchObject({ action: 'tag', fields: [{ name: 'X-Virus-Scanned', value: 'postseal at filter.test' }] });
  });

  it("names clamd's version in the clean finding once it has asked for it, without delaying a scan for it", async () => {
    const bank: Bank = loadTestBank({ stages: ['virus'], virus: { socket: clamd.socket } });
    const stage = stageFor(virusStage, bank, deps);
    const first = await stage.run(testTransaction(CLEAN, { bank }), new AbortController().signal);
    expect(first.findings).toEqual([{ code: 'VIRUS_CLEAN', detail: `clamd at unix:${clamd.socket}` }]);
    let detail = '';
    for (let i = 0; i < 100 && !detail.startsWith('ClamAV'); i++) {
      await new Promise((r) => setTimeout(r, 20));
      detail = (await stage.run(testTransaction(CLEAN, { bank }), new AbortController().signal)).findings[0].detail ?? '';
    }
    expect(detail).toMatch(/^ClamAV \d+\.\d+/);
  });

  it('writes the configured X-Virus-Scanned value, or none when scannedHeader is off', async () => {
    expect((await scan(CLEAN, { scannedHeaderValue: 'amavisd-new at example.net' })).verdict.fields).toEqual([{ name: 'X-Virus-Scanned', value: 'amavisd-new at example.net' }]);
    expect((await scan(CLEAN, { scannedHeader: false })).verdict).toMatchObject({ action: 'pass', fields: [] });
  });

  it('tags a virus for recipients who are all virus lovers instead of rejecting it', async () => {
    const { findings, verdict } = await scan(INFECTED, { lovers: ['example.net'] });
    expect(findings).toEqual([{ code: 'VIRUS_FOUND_LOVED', detail: EICAR_NAME }]);
    expect(verdict).toMatchObject({
      action: 'tag',
      fields: [
        { name: 'X-Virus-Scanned', value: 'postseal at filter.test' },
        { name: 'X-Postseal-Alert', value: `INFECTED, message contains virus: ${EICAR_NAME}` },
      ],
    });
  });

  it('rejects a virus when only some recipients are lovers (the strict side)', async () => {
    const { verdict } = await scan(INFECTED, { lovers: ['bob@example.net'] }, { recipients: ['bob@example.net', 'carol@example.net'] });
    expect(verdict.action).toBe('reject');
  });

  it('discards or delivers a virus with the alert field as the destiny says', async () => {
    expect((await scan(INFECTED, { destiny: 'discard' })).verdict).toMatchObject({ action: 'discard', reply: { code: '250' } });
    expect((await scan(INFECTED, { destiny: 'pass' })).verdict).toMatchObject({
      action: 'tag',
      fields: expect.arrayContaining([{ name: 'X-Postseal-Alert', value: `INFECTED, message contains virus: ${EICAR_NAME}` }]),
    });
  });

  it('holds a virus in the quarantine, or bounces it with a DSN naming it when no fakeSenderNames pattern matches, as the destiny says', async () => {
    expect((await scan(INFECTED, { destiny: 'quarantine' })).verdict).toMatchObject({ action: 'quarantine', reason: 'VIRUS_FOUND', fields: [], category: 'virus' });
    expect((await scan(INFECTED, { destiny: 'bounce', fakeSenderNames: ['^Worm\\.'] })).verdict).toMatchObject({
      action: 'bounce',
      category: 'virus',
      reply: { code: '554', enhanced: '5.7.0', text: `Message rejected: virus found (${EICAR_NAME})` },
    });
  });

  it('discards instead of bouncing a virus known to fake its sender (every virus by default), and the reply says there was no DSN', async () => {
    expect((await scan(INFECTED, { destiny: 'bounce' })).verdict).toMatchObject({
      action: 'discard',
      reason: 'VIRUS_FOUND',
      category: 'virus',
      reply: { code: '250', enhanced: '2.7.0', text: expect.stringMatching(/no DSN: the virus is known to fake its sender/) },
    });
    expect((await scan(INFECTED, { destiny: 'bounce', fakeSenderNames: ['eicar'] })).verdict).toMatchObject({ action: 'discard' });
  });

  it('bounces a virus to the sender on a signing bank whatever fakeSenderNames says: the sender is our own user there', async () => {
    const { verdict } = await scan(INFECTED, { destiny: 'bounce' }, { bank: { stages: ['virus', 'dkim-sign'], originating: true } });
    expect(verdict).toMatchObject({ action: 'bounce', reason: 'VIRUS_FOUND', reply: { code: '554', enhanced: '5.7.0' } });
  });

  it('does not scan when every recipient is in bypass, and says so', async () => {
    // The socket leads nowhere: a scan would be a scanner failure.
    const { findings, verdict } = await scan(INFECTED, { bypass: ['.example.net'], socket: nowhere });
    expect(findings).toEqual([{ code: 'VIRUS_BYPASSED', detail: expect.any(String) }]);
    expect(verdict).toMatchObject({ action: 'pass', fields: [] });
  });

  it('scans when bypass covers only some recipients', async () => {
    const { findings } = await scan(INFECTED, { bypass: ['bob@example.net'] }, { recipients: ['bob@example.net', 'carol@example.org'] });
    expect(findings[0].code).toBe('VIRUS_FOUND');
  });

  it('tempfails with 451 4.3.0 when clamd is not there', async () => {
    const { findings, verdict } = await scan(INFECTED, { socket: nowhere });
    expect(findings).toEqual([{ code: 'VIRUS_SCANNER_FAILED', detail: expect.stringMatching(/unreachable: cannot connect: ENOENT/) }]);
    expect(verdict).toMatchObject({ action: 'tempfail', reply: { code: '451', enhanced: '4.3.0' } });
  });

  it('delivers unscanned mail with the finding, and without X-Virus-Scanned, when onScannerFailure is pass', async () => {
    const { findings, verdict } = await scan(INFECTED, { socket: nowhere, onScannerFailure: 'pass' });
    expect(findings[0].code).toBe('VIRUS_SCANNER_FAILED');
    expect(verdict).toMatchObject({ action: 'pass', fields: [] });
  });

  it('does not send a message over maxScanBytes, passing it with a finding by default or tempfailing it', async () => {
    const big = `${CLEAN}${'x'.repeat(4000)}\r\n${TEST_VIRUS_MARKER}\r\n`;
    const passed = await scan(big, { maxScanBytes: 2048, socket: nowhere });
    expect(passed.findings).toEqual([{ code: 'VIRUS_NOT_SCANNED_TOO_BIG', detail: expect.stringContaining('maxScanBytes (2048)') }]);
    // Delivered unscanned, it says so in the mail, as amavisd's X-Amavis-Alert: UNCHECKED does.
    expect(passed.verdict).toMatchObject({
      action: 'tag',
      fields: [{ name: 'X-Postseal-Alert', value: expect.stringMatching(/^UNCHECKED, not scanned for viruses: .*maxScanBytes \(2048\)/) }],
    });
    const held = await scan(big, { maxScanBytes: 2048, onTooBig: 'tempfail' });
    expect(held.verdict).toMatchObject({ action: 'tempfail', reply: { code: '451', enhanced: '4.3.4' } });
  });

  describe('a message clamd alone reads short: nested past its MaxRecursion (17 by default: OK below it), or split at a boundary it does not read', () => {
    const eicarPart = `Content-Type: application/octet-stream; name="invoice.com"\r\nContent-Transfer-Encoding: base64\r\n\r\n${Buffer.from(EICAR).toString('base64')}`;
    /** `inner` as the one part of `levels` multiparts, each inside the one before. */
    const entity = (levels: number, inner: string) => {
      let body = inner;
      for (let i = levels; i >= 1; i--) body = `Content-Type: multipart/mixed; boundary="b${i}"\r\n\r\n--b${i}\r\n${body}\r\n--b${i}--\r\n`;
      return body;
    };
    const nested = (levels: number, inner: string) => `${CLEAN.split('\r\n\r\n')[0]}\r\nMIME-Version: 1.0\r\n${entity(levels, inner)}`;

    it('finds EICAR 25 levels deep by scanning the parts again, each at the top of a message of its own', async () => {
      const { findings, verdict } = await scan(nested(25, eicarPart));
      expect(findings).toEqual([{ code: 'VIRUS_FOUND', detail: expect.stringContaining(`${EICAR_NAME} (scan 1 of 1, `) }]);
      expect(verdict).toMatchObject({ action: 'reject', reply: { code: '554' } });
    });

    it('passes a clean deep message as scanned, saying it was scanned in pieces', async () => {
      const { findings } = await scan(nested(25, 'Content-Type: text/plain\r\n\r\nhello'));
      expect(findings).toEqual([{ code: 'VIRUS_CLEAN', detail: expect.stringMatching(/ bytes in 1 scans of whole parts$/) }]);
    });

    it('scans a message nested no deeper than maxMimeDepth once, whole', async () => {
      const { findings } = await scan(nested(10, 'Content-Type: text/plain\r\n\r\nhello'));
      expect(findings).toEqual([{ code: 'VIRUS_CLEAN', detail: `clamd at unix:${clamd.socket}` }]);
    });

    it('finds EICAR behind a boundary in RFC 2231 form, which clamd given the whole message reads as one text part', async () => {
      const msg = `${CLEAN.split('\r\n\r\n')[0]}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary*0="A"; boundary*1="B"\r\n\r\n--AB\r\n${eicarPart}\r\n--AB--\r\n`;
      const { findings } = await scan(msg);
      expect(findings).toEqual([{ code: 'VIRUS_FOUND', detail: expect.stringContaining(`${EICAR_NAME} (scan 1 of 1, `) }]);
    });

    it('finds EICAR behind the first of two Content-Type fields (Thunderbird reads it, clamd the last), scanning that reading in pieces', async () => {
      const msg = `${CLEAN.split('\r\n\r\n')[0]}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="AB"\r\nContent-Type: text/plain\r\n\r\n--AB\r\n${eicarPart}\r\n--AB--\r\n`;
      const { findings } = await scan(msg);
      expect(findings).toEqual([{ code: 'VIRUS_FOUND', detail: expect.stringContaining(`${EICAR_NAME} (scan 1 of 1, `) }]);
    });

    it('does not pass EICAR behind a 2231 boundary in part 2 when part 1 is read differently by readers: not scanned, onTooBig decides', async () => {
      // Part 1's header has a line that is no field (readers disagree: the message is not cut);
      // part 2's boundary clamd does not read, so its OK said nothing of the EICAR inside.
      const inner = `Content-Type: multipart/mixed; boundary*0="A"; boundary*1="B"\r\n\r\n--AB\r\n${eicarPart}\r\n--AB--\r\n`;
      const msg = `${CLEAN.split('\r\n\r\n')[0]}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="top"\r\n\r\n--top\r\nContent-Type: text/plain\r\nnot a field\r\n\r\nhi\r\n--top\r\n${inner}--top--\r\n`;
      const { findings, verdict } = await scan(msg, { onTooBig: 'tempfail' });
      expect(findings).toEqual([{ code: 'VIRUS_NOT_SCANNED_TOO_BIG', detail: expect.stringContaining('part 2: a boundary in RFC 2231 form') }]);
      expect(verdict).toMatchObject({ action: 'tempfail', reply: { code: '451' } });
    });

    it('does not pass EICAR behind a 2231 boundary after more parts than the walk makes (MAX_MIME_PARTS): not scanned, onTooBig decides', async () => {
      const many = 'Content-Type: text/plain\r\n\r\nx\r\n--top\r\n'.repeat(MAX_MIME_PARTS + 10);
      const inner = `Content-Type: multipart/mixed; boundary*0="A"; boundary*1="B"\r\n\r\n--AB\r\n${eicarPart}\r\n--AB--\r\n`;
      const msg = `${CLEAN.split('\r\n\r\n')[0]}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="top"\r\n\r\n--top\r\n${many}${inner}--top--\r\n`;
      const { findings } = await scan(msg, { onTooBig: 'tempfail' });
      expect(findings).toEqual([{ code: 'VIRUS_NOT_SCANNED_TOO_BIG', detail: expect.stringContaining(`more than ${MAX_MIME_PARTS} MIME parts`) }]);
    }, 30_000);

    it('does not cut a part whose 2231 boundary comes with a header line that is no field as if only clamd misread it: not scanned, onTooBig decides', async () => {
      // Over maxScanBytes, so only the pieces are scanned: they must not be cut where readers disagree.
      const padding = `--top\r\nContent-Type: text/plain\r\n\r\n${'x'.repeat(70).concat('\r\n').repeat(20)}`;
      const msg = `${CLEAN.split('\r\n\r\n')[0]}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="top"\r\n\r\n${padding}--top\r\nContent-Type: multipart/mixed; boundary*0="A"; boundary*1="B"\r\nnot a field\r\n\r\n--AB\r\nContent-Type: text/plain\r\n\r\nhello\r\n--AB--\r\n--top--\r\n`;
      const { findings } = await scan(msg, { onTooBig: 'tempfail', maxScanBytes: 1024 });
      expect(findings).toEqual([{ code: 'VIRUS_NOT_SCANNED_TOO_BIG', detail: expect.stringContaining('part 2: a line in the part header that is no header field') }]);
    });

    /** `inner` as a message of its own, base64-encoded in a message/rfc822 part of a plain multipart (RFC 2046 forbids it, Outlook sends it). */
    const forwardedEncoded = (inner: string) => {
      const message = `From: <carol@example.com>\r\nMIME-Version: 1.0\r\n${inner}`;
      const part = `Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n${Buffer.from(message).toString('base64').replace(/.{76}/g, '$&\r\n')}`;
      return nested(1, part);
    };

    it('does not pass EICAR 20 levels deep inside a base64 message/rfc822 part, which the walk does not enter and clamd answers OK for: not scanned, onTooBig decides', async () => {
      const { findings, verdict } = await scan(forwardedEncoded(entity(20, eicarPart)), { onTooBig: 'tempfail' });
      expect(findings).toEqual([{ code: 'VIRUS_NOT_SCANNED_TOO_BIG', detail: expect.stringContaining('an encoded message/rfc822 part nests 22 levels deep even in a piece') }]);
      expect(verdict).toMatchObject({ action: 'tempfail', reply: { code: '451' } });
    });

    it('does not pass EICAR behind a 2231 boundary inside a base64 message/rfc822 part, which pieces would carry as it is: not scanned, onTooBig decides', async () => {
      const inner = `Content-Type: multipart/mixed; boundary*0="A"; boundary*1="B"\r\n\r\n--AB\r\n${eicarPart}\r\n--AB--\r\n`;
      const { findings } = await scan(forwardedEncoded(inner), { onTooBig: 'tempfail' });
      expect(findings).toEqual([{ code: 'VIRUS_NOT_SCANNED_TOO_BIG', detail: expect.stringContaining('a boundary in RFC 2231 form') }]);
    });

    it('scans a message forwarded as a base64 message/rfc822 attachment once, whole, when it nests a few levels', async () => {
      const alternative =
        'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n--alt\r\nContent-Type: text/plain\r\n\r\nhi\r\n--alt\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--alt--\r\n';
      const { findings } = await scan(forwardedEncoded(alternative));
      expect(findings).toEqual([{ code: 'VIRUS_CLEAN', detail: `clamd at unix:${clamd.socket}` }]);
    });

    it('does not call a message nested past the MIME walk (100 levels) scanned: not scanned, onTooBig decides', async () => {
      const { findings, verdict } = await scan(nested(120, eicarPart), { onTooBig: 'tempfail' });
      expect(findings).toEqual([
        {
          code: 'VIRUS_NOT_SCANNED_TOO_BIG',
          detail: expect.stringMatching(
            /MIME nested 101 levels deep, deeper than virus\.maxMimeDepth \(10\), not cut into pieces: part [0-9/]+: MIME nested deeper than 100 levels$/,
          ),
        },
      ]);
      expect(verdict).toMatchObject({ action: 'tempfail', reply: { code: '451', enhanced: '4.3.4' } });
    });
  });

  describe('a message over maxScanBytes, in pieces of whole parts (largeMessages pieces, the default)', () => {
    const part = (name: string, data: Buffer | string) =>
      `Content-Type: application/octet-stream; name="${name}"\r\nContent-Transfer-Encoding: base64\r\n\r\n${(
        Buffer.from(data)
          .toString('base64')
          .match(/.{1,76}/g) ?? []
      ).join('\r\n')}`;
    const big = (parts: string[], preamble = '') =>
      `${CLEAN.replace('\r\n\r\n', '\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n')}${preamble}${parts.map((p) => `--b\r\n${p}\r\n`).join('')}--b--\r\n`;
    const filler = (n: number) => Buffer.alloc(n, 'filler line of an ordinary document\n');

    it('finds EICAR in a zip in the last part, naming the scan that found it', async () => {
      const msg = big([part('a.txt', filler(20_000)), part('b.txt', filler(20_000)), part('invoice.zip', zipOf({ 'invoice.pdf.com': EICAR }))]);
      const { findings, verdict } = await scan(msg, { maxScanBytes: 32 * 1024 });
      expect(findings).toEqual([
        { code: 'VIRUS_FOUND', detail: expect.stringMatching(new RegExp(`^${EICAR_NAME.replace(/\./g, '\\.')} \\(scan 2 of 2, from part 2 to after part 3\\)$`)) },
      ]);
      expect(verdict).toMatchObject({ action: 'reject', reply: { code: '554' } });
    });

    it('passes a clean one as scanned, with X-Virus-Scanned, saying in how many scans', async () => {
      const { findings, verdict } = await scan(big([part('a.txt', filler(20_000)), part('b.txt', filler(20_000))]), { maxScanBytes: 32 * 1024 });
      expect(findings).toEqual([{ code: 'VIRUS_CLEAN', detail: expect.stringMatching(/; \d+ bytes in 2 scans of whole parts$/) }]);
      expect(verdict).toMatchObject({ action: 'tag', fields: [{ name: 'X-Virus-Scanned', value: expect.any(String) }] });
    });

    it("scans the message's own header fields with every piece", async () => {
      const msg = big([part('a.txt', filler(40_000))]).replace('Subject: hello', `Subject: hello\r\nX-Payload: ${TEST_VIRUS_MARKER}`);
      const { findings } = await scan(msg, { maxScanBytes: 32 * 1024 });
      expect(findings).toEqual([{ code: 'VIRUS_FOUND', detail: expect.stringContaining(`${TEST_VIRUS_NAME} (scan 1 of`) }]);
    });

    it('finds a virus in a multipart preamble, which readers of uuencode may decode', async () => {
      const { findings } = await scan(big([part('a.txt', filler(40_000))], `${TEST_VIRUS_MARKER}\r\n`), { maxScanBytes: 32 * 1024 });
      expect(findings).toEqual([{ code: 'VIRUS_FOUND', detail: expect.stringContaining(`${TEST_VIRUS_NAME} (scan 1 of 1, from between the start and part 1 to after part 1)`) }]);
    });

    it('still finds a virus beside a part too large to scan; without one, the large part is named and onTooBig decides', async () => {
      const withVirus = big([part('huge.bin', filler(60_000)), part('invoice.zip', zipOf({ 'invoice.pdf.com': EICAR }))]);
      expect((await scan(withVirus, { maxScanBytes: 32 * 1024 })).findings[0]).toMatchObject({ code: 'VIRUS_FOUND' });
      const clean = await scan(big([part('huge.bin', filler(60_000)), part('a.txt', 'hello')]), { maxScanBytes: 32 * 1024, onTooBig: 'tempfail' });
      expect(clean.findings).toEqual([
        { code: 'VIRUS_NOT_SCANNED_TOO_BIG', detail: expect.stringMatching(/in 1 scans; not scanned: part 1: \d+ bytes, over virus\.maxScanBytes \(32768\)$/) },
      ]);
      expect(clean.verdict).toMatchObject({ action: 'tempfail', reply: { code: '451', enhanced: '4.3.4' } });
    });

    it.each([
      ['a CR after it (Thunderbird strips it)', '--b\r\r\n'],
      ['another case (clamd ignores case)', '--B\r\n'],
    ])('does not cut a message whose delimiter has %s: clamd finds the virus behind it in the whole message, in a piece it would not', async (_what, delimiter) => {
      const msg = big([part('a.txt', filler(20_000)), part('b.txt', filler(20_000))]).replace(
        /--b--\r\n$/,
        `${delimiter}${part('invoice.zip', zipOf({ 'invoice.pdf.com': EICAR }))}\r\n--b--\r\n`,
      );
      expect((await scan(msg, { maxScanBytes: 1024 * 1024 })).findings[0]).toMatchObject({ code: 'VIRUS_FOUND' });
      const { findings } = await scan(msg, { maxScanBytes: 32 * 1024 });
      expect(findings).toEqual([
        {
          code: 'VIRUS_NOT_SCANNED_TOO_BIG',
          detail: expect.stringMatching(/not cut into pieces: mail readers split it differently \(part 2: a line that some readers take for a boundary/),
        },
      ]);
    });

    it('with largeMessages skip, sends nothing to clamd, as before', async () => {
      const msg = big([part('invoice.zip', zipOf({ 'invoice.pdf.com': EICAR })), part('a.txt', filler(40_000))]);
      const { findings } = await scan(msg, { maxScanBytes: 32 * 1024, largeMessages: 'skip', socket: nowhere });
      expect(findings).toEqual([{ code: 'VIRUS_NOT_SCANNED_TOO_BIG', detail: expect.stringContaining('over virus.maxScanBytes (32768)') }]);
    });
  });

  it('refuses a message over maxScanBytes with 552 5.3.4 on a signing bank by default (onTooBig auto), and on any bank with onTooBig reject', async () => {
    const big = `${CLEAN}${'x'.repeat(4000)}\r\n`;
    const signing = { stages: ['virus', 'dkim-sign'], originating: true };
    const refused = await scan(big, { maxScanBytes: 2048, socket: nowhere }, { bank: signing });
    expect(refused.findings).toEqual([{ code: 'VIRUS_NOT_SCANNED_TOO_BIG', detail: expect.any(String) }]);
    expect(refused.verdict).toMatchObject({ action: 'reject', reply: { code: '552', enhanced: '5.3.4' } });
    expect((await scan(big, { maxScanBytes: 2048, socket: nowhere, onTooBig: 'reject' })).verdict).toMatchObject({ action: 'reject', reply: { code: '552' } });
  });

  it("never passes a message over clamd's own StreamMaxLength as scanned: not scanned when clamd's answer is heard, a scanner failure when its reset ate it", async () => {
    // clamd closes with our chunks unread, so its kernel resets the connection, and whether its
    // "size limit exceeded" answer is read before the reset is a race of the two kernels.
    const big = `${CLEAN}${`${'y'.repeat(998)}\r\n`.repeat(Math.ceil(clamd.streamMaxBytes / 1000) + 1)}`;
    const { findings, verdict } = await scan(big);
    expect(findings).toHaveLength(1);
    if (findings[0].code === 'VIRUS_NOT_SCANNED_TOO_BIG') expect(findings[0].detail).toContain('StreamMaxLength');
    else {
      expect(findings[0]).toEqual({ code: 'VIRUS_SCANNER_FAILED', detail: expect.stringContaining('most likely at its StreamMaxLength') });
      expect(verdict).toMatchObject({ action: 'tempfail' });
    }
    expect(verdict.fields ?? []).not.toContainEqual(expect.objectContaining({ name: 'X-Virus-Scanned' }));
  });
});

describe('the virus stage with a clamd that never answers', () => {
  it('gives up after virus.timeoutMs, inside the stage timeout, so onScannerFailure decides', async () => {
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((sock) => {
      sockets.add(sock);
      sock.resume();
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (silent.address() as net.AddressInfo).port;
      const started = Date.now();
      const { findings, verdict } = await scan(CLEAN, { host: '127.0.0.1', port, timeoutMs: 300 }, { bank: { timeouts: { stageTimeoutMs: 1000 } } });
      expect(findings).toEqual([{ code: 'VIRUS_SCANNER_FAILED', detail: expect.stringContaining('timeout: no complete answer within 300 ms') }]);
      expect(verdict).toMatchObject({ action: 'tempfail', reason: 'VIRUS_SCANNER_FAILED' });
      expect(Date.now() - started).toBeLessThan(1000);
      // The connection is closed by us, not left to clamd: the server side hears it end.
      const deadline = Date.now() + 2000;
      while (![...sockets].every((s) => s.destroyed || s.readableEnded) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect([...sockets].every((s) => s.destroyed || s.readableEnded)).toBe(true);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  });
});

describe('the virus settings at load', () => {
  const load = (overlay: Record<string, unknown>) => () => loadTestBank({ stages: ['virus'], ...overlay });

  it('refuses a scan timeout that the stage timeout would cut short', () => {
    expect(load({ timeouts: { stageTimeoutMs: 20000 }, virus: { timeoutMs: 20000 } })).toThrow(/\/virus\/timeoutMs: 20000 is not below \/timeouts\/stageTimeoutMs/);
    expect(load({ timeouts: { stageTimeoutMs: 20000 }, virus: { timeoutMs: 19000 } })).not.toThrow();
  });

  /** The shipped default and ORIGINATING banks, ORIGINATING with the virus stage and `virus` settings added. */
  function loadShipped(virus: Record<string, unknown>) {
    const dir = mkdtempSync(path.join(tmpdir(), 'postseal-virus-banks-'));
    mkdirSync(path.join(dir, 'banks'));
    const shipped = (name: string) => YAML.parse(readFileSync(path.join(__dirname, '../../policy-banks', `${name}.yaml`), 'utf8'));
    const originating = shipped('ORIGINATING');
    writeFileSync(path.join(dir, 'banks', 'default.yaml'), YAML.stringify(shipped('default')));
    writeFileSync(path.join(dir, 'banks', 'ORIGINATING.yaml'), YAML.stringify({ ...originating, stages: [...originating.stages, 'virus'], virus }));
    writeFileSync(path.join(dir, 'postseal.yaml'), 'bankDir: banks\nlisteners: [{ port: 0, bank: default }, { port: 0, bank: ORIGINATING }]\n');
    return () => loadConfig(path.join(dir, 'postseal.yaml'));
  }

  it('refuses destiny pass in the shipped ORIGINATING bank, naming the file, the pointer and the fix', () => {
    let err: unknown;
    try {
      loadShipped({ destiny: 'pass' })();
    } catch (e) {
      err = e;
    }
    expect(isPostsealError(err, 'CFG_INCONSISTENT')).toBe(true);
    expect((err as Error).message).toMatch(
      /ORIGINATING\.yaml: \/virus\/destiny: "pass" delivers viruses, but this bank signs .*; use reject \(the default\), bounce or quarantine$/,
    );
  });

  it('refuses, in the shipped ORIGINATING bank, every setting that would sign unscanned mail or drop it without a clear reply', () => {
    expect(loadShipped({ onTooBig: 'pass' })).toThrow(/ORIGINATING\.yaml: \/virus\/onTooBig: "pass" delivers big mail unscanned/);
    expect(loadShipped({ onScannerFailure: 'pass' })).toThrow(/ORIGINATING\.yaml: \/virus\/onScannerFailure: "pass" /);
    expect(loadShipped({ destiny: 'discard' })).toThrow(/ORIGINATING\.yaml: \/virus\/destiny: "discard" drops the mail without telling our user/);
    for (const ok of [{ destiny: 'bounce' }, { destiny: 'quarantine' }, { onTooBig: 'reject' }, { onTooBig: 'tempfail' }]) expect(loadShipped(ok)).not.toThrow();
  });

  it('loads onTooBig pass and onScannerFailure pass on the inbound default bank', () => {
    expect(load({ virus: { onTooBig: 'pass', onScannerFailure: 'pass', destiny: 'discard' } })).not.toThrow();
  });

  it('refuses a fakeSenderNames entry that is not a regular expression, naming its pointer', () => {
    expect(loadShipped({ fakeSenderNames: ['Worm.', '(unclosed'] })).toThrow(/ORIGINATING\.yaml: \/virus\/fakeSenderNames\/1: "\(unclosed" is not a regular expression/);
  });

  it('refuses virus lovers in the shipped ORIGINATING bank', () => {
    expect(loadShipped({ lovers: ['example.net'] })).toThrow(/ORIGINATING\.yaml: \/virus\/lovers: /);
  });

  it('loads the shipped ORIGINATING bank with the virus stage at its default destiny, reject', () => {
    expect(loadShipped({})().banks.get('ORIGINATING')?.virus).toMatchObject({ destiny: 'reject', lovers: [] });
  });
});

describe('the virus stage in the SMTP path', () => {
  it('answers 554 5.7.0 at the end of DATA for EICAR and forwards nothing, and forwards clean mail with X-Virus-Scanned', async () => {
    const sink = await startSink();
    const h = await startHarness({ forwardPort: sink.port, banks: { default: { stages: ['virus'], virus: { socket: clamd.socket } } } });
    try {
      const c = await TestClient.connect(h.app.portOf('default'));
      const infected = await c.send({ from: 'alice@example.org', to: ['bob@example.net'], data: INFECTED });
      const clean = await c.send({ from: 'alice@example.org', to: ['bob@example.net'], data: CLEAN });
      await c.quit();
      expect(infected.final).toMatchObject({ code: 554, text: expect.stringMatching(/^5\.7\.0 Message rejected: virus found \(Win\.Test\.EICAR_HDB-1\.UNOFFICIAL\)/) });
      expect(clean.final?.code).toBe(250);
      expect(sink.received).toHaveLength(1);
      expect(sink.received[0].data.toString()).toMatch(/^X-Virus-Scanned: postseal at filter\.test\r\n/m);
      expect(h.logs.find((l) => l.code === 'CFG_VIRUS_SCANNER_NOT_ANSWERING')).toBeUndefined();
    } finally {
      await h.close();
      await sink.close();
    }
  });

  it('starts with a warning naming keepConnections when the scanner answers PING but has no sessions, and none with keepConnections 0', async () => {
    // A clamd-compatible scanner without IDSESSION: it answers every command as outside one.
    const server = net.createServer((sock) => {
      sock.on('error', () => undefined);
      sock.on('data', () => sock.end('PONG\0'));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as net.AddressInfo).port;
    const sink = await startSink();
    try {
      for (const keepConnections of [8, 0]) {
        const h = await startHarness({ forwardPort: sink.port, banks: { default: { stages: ['virus'], virus: { host: '127.0.0.1', port, keepConnections } } } });
        try {
          const warning = h.logs.find((l) => l.code === 'CFG_VIRUS_SCANNER_NOT_ANSWERING');
          if (keepConnections) expect(warning).toMatchObject({ level: 40, msg: expect.stringContaining('answers PING but not inside an IDSESSION') });
          else expect(warning).toBeUndefined();
          expect(warning?.msg ?? '').not.toContain('did not answer PING');
        } finally {
          await h.close();
        }
      }
    } finally {
      await sink.close();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('starts with a warning when clamd does not answer, and tempfails its mail', async () => {
    const sink = await startSink();
    const h = await startHarness({ forwardPort: sink.port, banks: { default: { stages: ['virus'], virus: { socket: nowhere } } } });
    try {
      expect(h.logs.find((l) => l.code === 'CFG_VIRUS_SCANNER_NOT_ANSWERING')).toMatchObject({
        level: 40,
        msg: expect.stringContaining(`bank default: clamd at unix:${nowhere} did not answer PING (unreachable: cannot connect: ENOENT)`),
      });
      const c = await TestClient.connect(h.app.portOf('default'));
      const r = await c.send({ from: 'alice@example.org', to: ['bob@example.net'], data: CLEAN });
      await c.quit();
      expect(r.final).toMatchObject({ code: 451, text: expect.stringMatching(/^4\.3\.0 Virus scan could not complete/) });
      expect(sink.received).toHaveLength(0);
    } finally {
      await h.close();
      await sink.close();
    }
  });
});
