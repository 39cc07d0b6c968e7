import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { emptyKeyStore } from '../../src/keys/key-store';
import type { StageDeps } from '../../src/pipeline/stage';
import { headerSanityStage } from '../../src/stages/header-sanity';
import { Message } from '../../src/transaction/message';
import { memorySpool, type Spool } from '../../src/transaction/spool';
import { loadTestBank } from '../helpers/banks';
import { decide } from '../../src/pipeline/verdict';
import { rulesOf, stageFor, testStageDeps, testTransaction } from '../helpers/stage-run';
import { startSink } from '../helpers/sink';
import { startHarness } from '../helpers/postseal';
import { TestClient } from '../helpers/smtp-client';

async function sendThrough(data: string | Buffer, headerSanity: Record<string, unknown>, mailParams?: string, to = ['b@example.net']) {
  const sink = await startSink();
  const h = await startHarness({ forwardPort: sink.port, banks: { default: { headerSanity, loopGuard: { traceHeader: false } } } });
  const c = await TestClient.connect(h.app.portOf('default'));
  const r = await c.send({ from: 'a@example.org', to, data, mailParams });
  await c.quit();
  await h.close();
  await sink.close();
  return { r, got: sink.received[0]?.data, log: h.logs.find((l) => l.msg === 'message') };
}

const latin = (s: string) => Buffer.from(s, 'latin1');

describe('header-sanity recipient exceptions', () => {
  const twoFroms = 'From: a@example.org\r\nFrom: b@example.org\r\n\r\nbody\r\n';

  it('delivers what it would reject to bad-header lovers, with X-Postseal-Alert naming the kind', async () => {
    const { r, got, log } = await sendThrough(twoFroms, { lovers: ['b@example.net'] });
    expect(r.final?.code).toBe(250);
    expect(got?.toString()).toMatch(/^X-Postseal-Alert: BAD HEADER SECTION, multiple_from\r\n/);
    expect(log?.findings).toEqual(expect.arrayContaining([expect.stringMatching(/^HEADER_SANITY_LOVED/)]));
  });

  it('rejects as usual when one recipient is not a lover (the strict side)', async () => {
    const { r } = await sendThrough(twoFroms, { lovers: ['b@example.net'] }, undefined, ['b@example.net', 'c@example.net']);
    expect(r.final?.code).toBe(550);
  });

  it('still applies fixes for lovers', async () => {
    const { r, got } = await sendThrough(latin('From: a@example.org\r\nSubject: gr\xc3\xbc\r\n\r\nbody\r\n'), { eightBitHeader: 'fix', lovers: ['.example.net'] });
    expect(r.final?.code).toBe(250);
    expect(got?.toString()).toContain('Subject: =?UTF-8?Q?gr=C3=BC?=');
  });

  it('does not check mail whose every recipient bypasses header checks', async () => {
    const { r, got, log } = await sendThrough(twoFroms, { bypass: ['b@'] });
    expect(r.final?.code).toBe(250);
    expect(got?.toString()).toBe(twoFroms);
    expect(log?.findings).toEqual(['HEADER_SANITY_BYPASSED']);
  });
});

describe('header-sanity', () => {
  it('rejects a message without From with 550 5.6.0 when missingFrom is reject', async () => {
    const { r } = await sendThrough('Subject: x\r\n\r\nbody\r\n', { missingFrom: 'reject' });
    expect(r.final?.code).toBe(550);
    expect(r.final?.text).toBe('5.6.0 Message header malformed: no From field');
  });

  it('rejects two From fields when multipleFrom is reject', async () => {
    const { r } = await sendThrough('From: a@example.org\r\nFrom: b@example.org\r\n\r\nbody\r\n', { multipleFrom: 'reject' });
    expect(r.final?.code).toBe(550);
    expect(r.final?.text).toBe('5.6.0 Message header malformed: several From fields');
  });

  it('rejects two From fields by default, naming the finding in the log', async () => {
    const { r, log } = await sendThrough('From: a@example.org\r\nFrom: b@example.org\r\n\r\nbody\r\n', {});
    expect(r.final?.code).toBe(550);
    expect(r.final?.text).toMatch(/^5\.6\.0 /);
    expect(log?.findings).toEqual(expect.arrayContaining([expect.stringMatching(/^HEADER_SANITY_MULTIPLE_FROM/)]));
  });

  it('passes two From fields with a finding when multipleFrom is pass', async () => {
    const { r, log } = await sendThrough('From: a@example.org\r\nFrom: b@example.org\r\n\r\nbody\r\n', { multipleFrom: 'pass' });
    expect(r.final?.code).toBe(250);
    expect(log?.findings).toEqual(expect.arrayContaining([expect.stringMatching(/^HEADER_SANITY_MULTIPLE_FROM/)]));
  });

  it('encodes 8-bit header fields as RFC 2047 words when eightBitHeader is fix, leaving other fields alone', async () => {
    const { r, got } = await sendThrough(latin('From: a@example.org\r\nSubject: gr\xc3\xbc\xc3\x9fe\r\nX-Keep:   odd   spacing\r\n\r\nbody\r\n'), { eightBitHeader: 'fix' });
    expect(r.final?.code).toBe(250);
    expect(got?.toString()).toBe('From: a@example.org\r\nSubject: =?UTF-8?Q?gr=C3=BC=C3=9Fe?=\r\nX-Keep:   odd   spacing\r\n\r\nbody\r\n');
  });

  it('treats 8-bit headers as fine when the client sent SMTPUTF8', async () => {
    const { log } = await sendThrough(latin('From: a@example.org\r\nSubject: gr\xc3\xbc\xc3\x9fe\r\n\r\nbody\r\n'), { eightBitHeader: 'reject' }, 'SMTPUTF8');
    expect(log?.findings ?? []).not.toEqual(expect.arrayContaining([expect.stringMatching(/EIGHT_BIT/)]));
  });

  it('rejects 8-bit headers without SMTPUTF8 when eightBitHeader is reject', async () => {
    const { r } = await sendThrough(latin('From: a@example.org\r\nSubject: gr\xc3\xbc\xc3\x9fe\r\n\r\nbody\r\n'), { eightBitHeader: 'reject' });
    expect(r.final?.code).toBe(550);
  });

  it('folds an over-long header line when longLine is fix', async () => {
    const words = Array.from({ length: 300 }, (_, i) => `word${i}`).join(' ');
    const { got } = await sendThrough(`From: a@example.org\r\nSubject: ${words}\r\n\r\nbody\r\n`, { longLine: 'fix' });
    const lines = got!.toString().split('\r\n');
    expect(Math.max(...lines.map((l) => l.length))).toBeLessThanOrEqual(998);
    expect(got!.toString().replace(/\r\n /g, ' ')).toContain(`Subject: ${words}`);
  });

  it('rejects NUL bytes when nul is reject', async () => {
    const { r } = await sendThrough(latin('From: a@example.org\r\n\r\nbo\x00dy\r\n'), { nul: 'reject' });
    expect(r.final?.code).toBe(550);
  });

  it('stops rewriting a message without its NUL bytes when the stage signal aborts, leaving no spool file', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'header-sanity-abort-'));
    const ac = new AbortController();
    const body = Array.from({ length: 200 }, () => Buffer.from(`${'x'.repeat(70)}\x00\r\n`, 'latin1'));
    const inner = memorySpool(Buffer.concat([Buffer.from('From: a@example.org\r\n\r\n'), ...body]));
    let reads = 0;
    let rewritten = 0;
    // The stage reads the body once to inspect it; the second read is the rewrite, aborted after its first chunk.
    const spool: Spool = {
      ...inner,
      openRaw(start) {
        if (++reads === 1) return inner.openRaw(start);
        return (async function* () {
          for (const [i, chunk] of body.entries()) {
            if (i === 1) ac.abort(new Error('stage timed out'));
            rewritten++;
            yield chunk;
          }
        })();
      },
    };
    const tx = testTransaction('');
    tx.message = Message.parse(spool);
    const deps = {
      hostname: 'filter.test',
      authservId: 'filter.test',
      bankName: 'default',
      log: pino({ level: 'silent' }),
      spool: { dir, memoryThresholdBytes: 0 },
      keys: emptyKeyStore,
    } as Partial<StageDeps> as StageDeps;
    const stage = stageFor(headerSanityStage, loadTestBank({ headerSanity: { nul: 'fix' } }), deps);
    await expect(stage.run(tx, ac.signal)).rejects.toThrow('stage timed out');
    expect(rewritten).toBeLessThan(body.length);
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe('header-sanity destiny (amavisd $final_bad_header_destiny)', () => {
  const twoFroms = 'From: a@example.org\r\nFrom: b@example.org\r\n\r\nbody\r\n';

  it('discards what a kind would reject when the destiny is discard (250, nothing delivered)', async () => {
    const { r, got } = await sendThrough(twoFroms, { destiny: 'discard' });
    expect(r.final?.code).toBe(250);
    expect(got).toBeUndefined();
  });

  it('delivers it with X-Postseal-Alert naming the kind when the destiny is pass', async () => {
    const { r, got } = await sendThrough(twoFroms, { destiny: 'pass' });
    expect(r.final?.code).toBe(250);
    expect(got?.toString()).toMatch(/^X-Postseal-Alert: BAD HEADER SECTION, several From fields\r\n/);
  });

  it('quarantines or bounces it as the destiny says, with the 550 5.6.0 the bounce reports', async () => {
    for (const destiny of ['quarantine', 'bounce'] as const) {
      const bank = loadTestBank({ stages: ['header-sanity'], notify: { host: '127.0.0.1', port: 10027 }, headerSanity: { destiny } });
      const tx = testTransaction(twoFroms, { bank });
      const outcome = await stageFor(headerSanityStage, bank, testStageDeps({ server: '127.0.0.1:9' })).run(tx, new AbortController().signal);
      expect(decide(outcome.findings, rulesOf(bank))).toMatchObject({ action: destiny, reason: 'HEADER_SANITY_MULTIPLE_FROM' });
    }
    const bank = loadTestBank({ stages: ['header-sanity'], notify: { host: '127.0.0.1', port: 10027 }, headerSanity: { destiny: 'bounce' } });
    const outcome = await stageFor(headerSanityStage, bank, testStageDeps({ server: '127.0.0.1:9' })).run(testTransaction(twoFroms, { bank }), new AbortController().signal);
    expect(decide(outcome.findings, rulesOf(bank)).reply).toMatchObject({ code: '550', enhanced: '5.6.0' });
  });

  it('still delivers to bad-header lovers whatever the destiny', async () => {
    const { r, got } = await sendThrough(twoFroms, { destiny: 'discard', lovers: ['b@example.net'] });
    expect(r.final?.code).toBe(250);
    expect(got?.toString()).toMatch(/^X-Postseal-Alert: BAD HEADER SECTION, multiple_from\r\n/);
  });
});

describe('header-sanity and the fields only postseal writes', () => {
  const forged =
    'X-Postseal-Alert: CLEAN, nothing to see\r\nX-Virus-Scanned: postseal at  FILTER.test\r\nX-Virus-Scanned: amavisd-new at msa.example.org\r\n' +
    'X-Postseal-Quarantine: no\r\nFrom: a@example.org\r\nSubject: x\r\n\r\nbody\r\n';

  it("removes every X-Postseal-Alert and X-Postseal-Quarantine it arrived with, and the X-Virus-Scanned of our value, keeping other hosts' ones", async () => {
    const { r, got, log } = await sendThrough(forged, {});
    expect(r.final?.code).toBe(250);
    expect(got?.toString()).toBe('X-Virus-Scanned: amavisd-new at msa.example.org\r\nFrom: a@example.org\r\nSubject: x\r\n\r\nbody\r\n');
    expect(log?.findings).toContain('HEADER_SANITY_OWN_FIELDS_REMOVED(X-Postseal-Alert,X-Virus-Scanned,X-Postseal-Quarantine)');
  });

  it('removes them for recipients who bypass the header checks too', async () => {
    const { got } = await sendThrough(forged, { bypass: ['b@'] });
    expect(got?.toString()).not.toMatch(/X-Postseal-|postseal at/i);
  });

  it('removes the X-Virus-Scanned of the value the bank configures for its virus stage', async () => {
    const bank = loadTestBank({ stages: ['header-sanity'], virus: { scannedHeaderValue: 'ClamAV at example.net' } });
    const tx = testTransaction('X-Virus-Scanned: clamav at example.net\r\nX-Virus-Scanned: postseal at filter.test\r\nFrom: a@example.org\r\n\r\nx\r\n', { bank });
    const outcome = await stageFor(headerSanityStage, bank, testStageDeps({ server: '127.0.0.1:9' })).run(tx, new AbortController().signal);
    expect(outcome.message?.fields.map((f) => f.raw.toString())).toEqual(['X-Virus-Scanned: postseal at filter.test\r\n', 'From: a@example.org\r\n']);
  });

  it('leaves them alone when removeOwnFields is off', async () => {
    const { got } = await sendThrough(forged, { removeOwnFields: false });
    expect(got?.toString()).toBe(forged);
  });
});
