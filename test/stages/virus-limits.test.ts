/**
 * clamd stops at its MaxRecursion (17 by default, MIME and archive levels together) and, with
 * AlertExceedsMax off (Debian's clamd.conf), answers OK for what lies deeper: EICAR in a zip
 * nested 20 levels deep passes a bank without the banned stage. postseal warns at start-up when
 * its clamd does so, and with AlertExceedsMax on it refuses such mail but still takes deep MIME
 * apart itself (stages/virus/index.ts, probe.ts).
 */
import { gzipSync } from 'node:zlib';
import type { Bank } from '../../src/config/bank-schema';
import { decide } from '../../src/pipeline/verdict';
import { virusStage } from '../../src/stages/virus';
import { loadTestBank } from '../helpers/banks';
import { EICAR, EICAR_NAME, messageWithAttachment, startClamd, zipOf, type ClamdServer } from '../helpers/clamd';
import { startHarness } from '../helpers/postseal';
import { startSink } from '../helpers/sink';
import { rulesOf, stageFor, testStageDeps, testTransaction } from '../helpers/stage-run';

const deps = testStageDeps({ server: '127.0.0.1:9' });
const HEADER = 'From: <alice@example.org>\r\nTo: <bob@example.net>\r\nSubject: hello\r\nMIME-Version: 1.0\r\n';
const EICAR_PART = `Content-Type: application/octet-stream; name="invoice.com"\r\nContent-Transfer-Encoding: base64\r\n\r\n${Buffer.from(EICAR).toString('base64')}`;

/** `inner` as the one part of `levels` multiparts, each inside the one before. */
function nested(levels: number, inner: string): string {
  let body = inner;
  for (let i = levels; i >= 1; i--) body = `Content-Type: multipart/mixed; boundary="b${i}"\r\n\r\n--b${i}\r\n${body}\r\n--b${i}--\r\n`;
  return `${HEADER}${body}`;
}

/** EICAR in a zip inside `levels` zips. */
function deepZip(levels: number): string {
  let zip = zipOf({ 'invoice.com': EICAR });
  for (let i = 0; i < levels; i++) zip = zipOf({ [`level${i}.zip`]: zip });
  return messageWithAttachment({ filename: 'deep.zip', attachment: zip });
}

let plain: ClamdServer;
let alerting: ClamdServer;
beforeAll(async () => {
  // MaxFileSize small, so that a legitimate archive meets it quickly (25M by default).
  [plain, alerting] = await Promise.all([startClamd(), startClamd({ alertExceedsMax: true, maxFileSize: '100K' })]);
}, 30_000);
afterAll(async () => {
  await Promise.all([plain?.stop(), alerting?.stop()]);
});

async function scan(clamd: ClamdServer, data: string, bankOver: Record<string, unknown> = {}) {
  const bank: Bank = loadTestBank({ stages: ['virus'], virus: { socket: clamd.socket }, ...bankOver });
  const outcome = await stageFor(virusStage, bank, deps).run(testTransaction(data, { bank }), new AbortController().signal);
  return { findings: outcome.findings, verdict: decide(outcome.findings, rulesOf(bank)) };
}

describe('clamd with AlertExceedsMax', () => {
  it('refuses EICAR in a zip nested 20 levels deep, naming the limit clamd stopped at', async () => {
    const { findings, verdict } = await scan(alerting, deepZip(20));
    expect(findings).toEqual([{ code: 'VIRUS_FOUND', detail: 'Heuristics.Limits.Exceeded.MaxRecursion' }]);
    expect(verdict).toMatchObject({ action: 'reject', reply: { code: '554' } });
  });

  it('passes a clean message nested 25 MIME levels deep as scanned: its parts are scanned again in pieces', async () => {
    const { findings } = await scan(alerting, nested(25, 'Content-Type: text/plain\r\n\r\nhello'));
    expect(findings).toEqual([{ code: 'VIRUS_CLEAN', detail: expect.stringMatching(/ bytes in 1 scans of whole parts$/) }]);
  });

  it('finds EICAR 25 MIME levels deep by its own name', async () => {
    const { findings } = await scan(alerting, nested(25, EICAR_PART));
    expect(findings).toEqual([{ code: 'VIRUS_FOUND', detail: expect.stringContaining(`${EICAR_NAME} (scan 1 of 1, `) }]);
  });

  it('still refuses the deep zip inside deep MIME: the piece that holds it meets the limit again', async () => {
    const zipPart = deepZip(20).split('\r\n\r\n').slice(1).join('\r\n\r\n');
    const boundary = /boundary="([^"]+)"/.exec(deepZip(20))![1];
    const inner = `Content-Type: multipart/mixed; boundary="${boundary}"\r\n\r\n${zipPart}`;
    const { findings } = await scan(alerting, nested(25, inner));
    expect(findings).toEqual([{ code: 'VIRUS_FOUND', detail: expect.stringContaining('Heuristics.Limits.Exceeded.MaxRecursion (scan 1 of 1, ') }]);
  });
  it('still refuses EICAR deep inside a base64 message/rfc822 part, which pieces cannot reach: not downgraded to unscanned (delivered on a bank that does not sign)', async () => {
    // The walk does not enter an encoded message/rfc822 part: a piece carries it as deep as it is.
    const inner = nested(20, EICAR_PART).slice(HEADER.length);
    const message = `From: <carol@example.com>\r\nMIME-Version: 1.0\r\n${inner}`;
    const part = `Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n${Buffer.from(message).toString('base64').replace(/.{76}/g, '$&\r\n')}`;
    const { findings, verdict } = await scan(alerting, nested(1, part));
    expect(findings).toEqual([{ code: 'VIRUS_FOUND', detail: expect.stringMatching(/^Heuristics\.Limits\.Exceeded\.MaxRecursion/) }]);
    expect(verdict).toMatchObject({ action: 'reject', reply: { code: '554' } });
  });
});

describe('clamd with AlertExceedsMax, at a limit of size', () => {
  // A gzip that unpacks to 300 KB: past the test clamd's MaxFileSize (100K), while the message
  // itself is below it (MaxFileSize counts the message too, as StreamMaxLength does).
  const bigGzip = () => gzipSync(Buffer.alloc(300 * 1024, 'x'));
  const bigZip = () => messageWithAttachment({ filename: 'photos.tar.gz', attachment: bigGzip() });

  it('takes a large legitimate archive for unscanned, not for a virus: delivered with an alert inbound, refused 552 where the bank signs', async () => {
    const inbound = await scan(alerting, bigZip());
    expect(inbound.findings).toEqual([
      { code: 'VIRUS_NOT_SCANNED_TOO_BIG', detail: expect.stringMatching(/ bytes, clamd stopped at Heuristics\.Limits\.Exceeded\.MaxFileSize \(its clamd\.conf limits\)$/) },
    ]);
    expect(inbound.verdict).toMatchObject({ action: 'tag', fields: [{ name: 'X-Postseal-Alert', value: expect.stringContaining('UNCHECKED') }] });
    const signing = await scan(alerting, bigZip(), { stages: ['virus', 'dkim-sign'], originating: true });
    expect(signing.verdict).toMatchObject({ action: 'reject', reply: { code: '552', enhanced: '5.3.4' } });
  });

  it('still finds a virus in a part beside the large archive; deep MIME whose pieces meet a size limit stays refused at MaxRecursion', async () => {
    // EICAR in a part of its own: clamd reports a signature before a limit.
    const big = bigZip();
    const boundary = /boundary="([^"]+)"/.exec(big)![1];
    const both = big.replace(`--${boundary}--`, `--${boundary}\r\n${EICAR_PART}\r\n--${boundary}--`);
    expect((await scan(alerting, both)).findings).toEqual([{ code: 'VIRUS_FOUND', detail: EICAR_NAME }]);
    const deepBig = nested(25, `Content-Type: application/gzip; name="photos.tar.gz"\r\nContent-Transfer-Encoding: base64\r\n\r\n${bigGzip().toString('base64')}`);
    // The pieces did not scan it all (one met MaxFileSize): they cannot overturn clamd's alert.
    expect((await scan(alerting, deepBig)).findings).toEqual([{ code: 'VIRUS_FOUND', detail: 'Heuristics.Limits.Exceeded.MaxRecursion' }]);
  });
});

describe('the start-up check of how clamd treats what lies past its MaxRecursion', () => {
  it('warns, naming clamd.conf AlertExceedsMax, when clamd answers OK for a message nested 200 levels deep; not when it alerts', async () => {
    // Without AlertExceedsMax the deep zip comes back clean: what the warning is about.
    expect((await scan(plain, deepZip(20))).findings.map((f) => f.code)).toEqual(['VIRUS_CLEAN']);
    const sink = await startSink();
    try {
      for (const clamd of [plain, alerting]) {
        const h = await startHarness({ forwardPort: sink.port, banks: { default: { stages: ['virus'], virus: { socket: clamd.socket } } } });
        try {
          const warning = h.logs.find((l) => l.code === 'CFG_VIRUS_SCANNER_PASSES_DEEP');
          if (clamd === plain)
            expect(warning).toMatchObject({
              level: 40,
              msg: expect.stringContaining(`bank default: clamd at unix:${clamd.socket} answers OK for a message nested 200 levels deep`),
            });
          else expect(warning).toBeUndefined();
          if (warning) expect(warning.msg).toContain('set "AlertExceedsMax yes" in clamd.conf');
          expect(h.logs.find((l) => l.code === 'CFG_VIRUS_SCANNER_NOT_ANSWERING')).toBeUndefined();
        } finally {
          await h.close();
        }
      }
    } finally {
      await sink.close();
    }
  });
});
