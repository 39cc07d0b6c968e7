/**
 * clamd stops at its MaxRecursion (17 by default, MIME and archive levels together) and, with
 * AlertExceedsMax off (Debian's clamd.conf), answers OK for what lies deeper: EICAR in a zip
 * nested 20 levels deep passes a bank without the banned stage. postseal warns at start-up when
 * its clamd does so, and with AlertExceedsMax on it refuses such mail but still takes deep MIME
 * apart itself (stages/virus/index.ts, probe.ts).
 */
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
  [plain, alerting] = await Promise.all([startClamd(), startClamd({ alertExceedsMax: true })]);
}, 30_000);
afterAll(async () => {
  await Promise.all([plain?.stop(), alerting?.stop()]);
});

async function scan(clamd: ClamdServer, data: string) {
  const bank: Bank = loadTestBank({ stages: ['virus'], virus: { socket: clamd.socket } });
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
