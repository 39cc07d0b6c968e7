import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { simpleParser } from 'mailparser';
import pino from 'pino';
import { emptyKeyStore } from '../../src/keys/key-store';
import { decide } from '../../src/pipeline/verdict';
import type { StageDeps } from '../../src/pipeline/stage';
import { sevenBitStage } from '../../src/stages/seven-bit';
import { Message } from '../../src/transaction/message';
import { spoolFrom } from '../../src/transaction/spool';
import { loadTestBank } from '../helpers/banks';
import { rulesOf, stageFor, testTransaction } from '../helpers/stage-run';
import { readAll } from '../helpers/streams';

const fixture = (name: string) => readFileSync(path.join(__dirname, '../fixtures/messages/signing', name));
// A low memory threshold sends rewritten messages through a spool file.
const deps = {
  hostname: 'filter.test',
  authservId: 'filter.test',
  bankName: 'default',
  log: pino({ level: 'silent' }),
  spool: { dir: tmpdir(), memoryThresholdBytes: 256 },
  keys: emptyKeyStore,
} as Partial<StageDeps> as StageDeps;

async function sevenBit(raw: Buffer, overlay: Record<string, unknown> = {}, fromFile = false) {
  const bank = loadTestBank({ stages: ['seven-bit'], ...overlay });
  const tx = testTransaction(raw, { bank });
  if (fromFile) tx.message = Message.parse(await spoolFrom(Readable.from([raw]), { dir: tmpdir(), memoryThresholdBytes: 0, maxSizeBytes: Infinity }));
  const outcome = await stageFor(sevenBitStage, bank, deps).run(tx, new AbortController().signal);
  if (fromFile) await tx.message.spool.dispose();
  const out = outcome.message ? await readAll(outcome.message.openRaw()) : raw;
  await outcome.message?.spool.dispose();
  return { outcome, out, text: out.toString('latin1'), codes: outcome.findings.map((f) => f.code), bank };
}

const isSevenBit = (b: Buffer) =>
  b.every((x) => x < 0x80) &&
  b
    .toString('latin1')
    .split('\r\n')
    .every((l) => l.length <= 998);

describe('seven-bit', () => {
  it('re-encodes an 8-bit text/plain body as quoted-printable, the text decoding to the same characters', async () => {
    const raw = fixture('8bit-text.eml');
    const { out, text, codes } = await sevenBit(raw);
    expect(codes).toEqual(['SEVEN_BIT_CONVERTED']);
    expect(isSevenBit(out)).toBe(true);
    expect(text).toContain('\r\nContent-Transfer-Encoding: quoted-printable\r\n');
    expect(text.split('\r\n').every((l) => l.length <= 76)).toBe(true);
    expect((await simpleParser(out)).text).toBe((await simpleParser(raw)).text);
  });

  it('encodes white space at the end of a line so that no hop can strip it', async () => {
    const { text } = await sevenBit(fixture('8bit-text.eml'));
    expect(text).toContain('Gr=C3=BC=C3=9Fe!  =20\r\n');
    expect(text).toContain('\r\n.a line that starts with a dot\r\n');
  });

  it('keeps every header field but Content-Transfer-Encoding byte for byte, in place', async () => {
    const raw = fixture('8bit-text.eml');
    const { text } = await sevenBit(raw);
    const header = (s: string) => s.slice(0, s.indexOf('\r\n\r\n'));
    expect(header(text)).toBe(header(raw.toString('latin1')).replace('Content-Transfer-Encoding: 8bit', 'Content-Transfer-Encoding: quoted-printable'));
  });

  it('converts only the 8-bit HTML part of a multipart/alternative, leaving preamble, boundaries and the ASCII part as they were', async () => {
    const raw = fixture('multipart-alternative-8bit-html.eml').toString('latin1');
    const { out, text } = await sevenBit(Buffer.from(raw, 'latin1'));
    expect(isSevenBit(out)).toBe(true);
    const before = raw.slice(0, raw.indexOf('Content-Type: text/html'));
    expect(text.startsWith(before)).toBe(true);
    expect(text).toContain(
      'Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<html><body><p>Gr=C3=BC=C3=9Fe &amp; K=C3=BCsse</p></body></html>\r\n--=_alt_1--\r\n',
    );
    expect((await simpleParser(out)).html).toBe((await simpleParser(Buffer.from(raw, 'latin1'))).html);
  });

  it('re-encodes a binary attachment as base64 and leaves the parts around it and the epilogue alone', async () => {
    const raw = fixture('8bit-attachment.eml');
    const { out, text } = await sevenBit(raw);
    expect(isSevenBit(out)).toBe(true);
    expect(text).toContain('Content-Disposition: attachment; filename="data.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQF');
    expect(text.endsWith('\r\n--outer\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nLast part.\r\n--outer--\r\nepilogue\r\n')).toBe(true);
    const parsed = await simpleParser(out);
    expect(parsed.attachments[0].content.equals(Buffer.from([...Array(4)].flatMap(() => [...Array(256).keys()])))).toBe(true);
  });

  it('passes mail that is already 7-bit on unchanged, with no new message and no finding', async () => {
    const { outcome } = await sevenBit(fixture('seven-bit.eml'));
    expect(outcome.message).toBeUndefined();
    expect(outcome.findings).toEqual([]);
  });

  it('relabels a part declared 8bit whose content is 7-bit, body untouched', async () => {
    const raw = Buffer.from('From: a@example.com\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: 8bit\r\n\r\nascii only\r\n');
    const { text } = await sevenBit(raw);
    expect(text).toBe('From: a@example.com\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: 7bit\r\n\r\nascii only\r\n');
  });

  it('adds MIME-Version and Content-Transfer-Encoding to raw 8-bit mail that had no MIME fields', async () => {
    const { text } = await sevenBit(Buffer.from('From: a@example.com\r\nSubject: x\r\n\r\nK\xf6ln\r\n', 'latin1'));
    expect(text).toBe('From: a@example.com\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nK=F6ln\r\n');
  });

  it('walks into a forwarded message/rfc822, converts its 8-bit parts and relabels the containers 7bit', async () => {
    const raw = fixture('nested-rfc822.eml');
    const { out, text } = await sevenBit(raw);
    expect(isSevenBit(out)).toBe(true);
    expect(text).toContain('Content-Type: multipart/mixed; boundary="a"\r\nContent-Transfer-Encoding: 7bit\r\n');
    expect(text).toContain('Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n\r\nFrom: other@example.org\r\n');
    expect(text).toContain('Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe in Latin-1\r\n--b\r\n');
    expect(text).toContain('<p>Gr=FC=DFe</p>\r\n--b--\r\n\r\n--a--\r\n');
  });

  it('leaves a multipart/signed with 8-bit content as it is, with a finding that passes by default', async () => {
    const { outcome, codes, bank } = await sevenBit(fixture('signed-8bit.eml'));
    expect(outcome.message).toBeUndefined();
    expect(codes).toEqual(['SEVEN_BIT_SIGNED_EIGHT_BIT']);
    expect(decide(outcome.findings, rulesOf(bank)).action).toBe('pass');
  });

  it('tempfails 8-bit multipart/signed mail with 451 4.6.3 when sevenBit.signedEightBit is tempfail', async () => {
    const { outcome, bank } = await sevenBit(fixture('signed-8bit.eml'), { sevenBit: { signedEightBit: 'tempfail' } });
    const v = decide(outcome.findings, rulesOf(bank));
    expect([v.action, v.reply.code, v.reply.enhanced]).toEqual(['tempfail', '451', '4.6.3']);
  });

  it('leaves mail with 8-bit header fields (SMTPUTF8) as it is, with a finding', async () => {
    const { outcome, codes } = await sevenBit(fixture('smtputf8-header.eml'));
    expect(outcome.message).toBeUndefined();
    expect(codes).toEqual(['SEVEN_BIT_EIGHT_BIT_HEADER']);
  });

  it('re-encodes 7-bit text with NUL or lines over 998 octets (binary in RFC 2045 terms)', async () => {
    const long = 'x'.repeat(1200);
    const { out, text } = await sevenBit(Buffer.from(`From: a@example.com\r\n\r\n${long}\r\nnul\0here\r\n`));
    expect(isSevenBit(out)).toBe(true);
    expect(text).toContain('nul=00here');
    expect(text.replace(/=\r\n/g, '')).toContain(long);
  });

  it('stops writing the rewritten message when the deadline passes, leaving no spool file behind', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'postseal-7bit-'));
    const bank = loadTestBank({ stages: ['seven-bit'] });
    const raw = fixture('8bit-attachment.eml');
    let checks = 0;
    // Passes the walk's check, then expires during the rewrite.
    const signal = {
      aborted: false,
      throwIfAborted: () => {
        if (++checks > 2) throw new Error('deadline');
      },
    } as unknown as AbortSignal;
    const stage = stageFor(sevenBitStage, bank, { ...deps, spool: { dir, memoryThresholdBytes: 0 } });
    await expect(stage.run(testTransaction(raw, { bank }), signal)).rejects.toThrow();
    expect(readdirSync(dir)).toEqual([]);
  });

  it('converts a large message from a spool file chunk by chunk, the decoded attachment equal to the original', async () => {
    const data = Buffer.alloc(3 * 1024 * 1024 + 7);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7919) & 0xff;
    const raw = Buffer.concat([
      Buffer.from(
        'From: a@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n',
      ),
      data,
      Buffer.from('\r\n--zz--\r\n'),
    ]);
    const { out } = await sevenBit(raw, {}, true);
    expect(isSevenBit(out)).toBe(true);
    expect((await simpleParser(out)).attachments[0].content.equals(data)).toBe(true);
  });
});
