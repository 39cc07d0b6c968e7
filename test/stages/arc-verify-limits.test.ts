/**
 * arc-verify under attack: the work a message can make it do is capped (RFC 8617 4.2.1's 50
 * sets, dkimVerify.maxSignatures, never a DKIM-Signature), and an aborted stage stops
 * asking DNS and rejects. DNS is a loopback server that logs every query.
 */
import { arcVerifyStage } from '../../src/stages/arc-verify';
import { corpusMessage, corpusZone } from '../helpers/auth';
import { mailauthSeal } from '../helpers/arc-chain';
import { loadTestBank } from '../helpers/banks';
import { startDnsServer, type DnsServer } from '../helpers/dns-server';
import { resultsAfter, stageFor, testStageDeps, testTransaction } from '../helpers/stage-run';
import { ARC_RESULT } from '../../src/lib/authentication-results';
import type { StageOutcome } from '../../src/pipeline/stage';

const arcOf = (outcome: StageOutcome) => resultsAfter(outcome).get(ARC_RESULT);

let dns: DnsServer;
beforeAll(async () => {
  dns = await startDnsServer(structuredClone(corpusZone));
});
afterAll(() => dns.close());
beforeEach(() => {
  dns.queries.length = 0;
});

const original = corpusMessage('relaxed-relaxed.eml');

/** `count` well-formed DKIM-Signatures, each naming its own selector (NXDOMAIN: a query each for a verifier that looks). */
function withDkimSignatures(message: Buffer, count: number): Buffer {
  const sigs = Array.from(
    { length: count },
    (_, i) =>
      `DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=flood${i};\r\n\th=from:to:subject; bh=OZUHvjT8siil7DzoDOkewNXEmbxm9um2l/WKVyvanFo=;\r\n\tb=${'A'.repeat(340)}==\r\n`,
  );
  return Buffer.concat([Buffer.from(sigs.join(''), 'latin1'), message]);
}

function stage(overlay: Record<string, unknown> = {}, timeoutMs = 300) {
  const auth = testStageDeps(dns, { timeoutMs: timeoutMs });
  return { auth, stage: stageFor(arcVerifyStage, loadTestBank(overlay), auth) };
}

test('1,000 DKIM-Signatures under one ARC set: only the ARC key is looked up', async () => {
  const message = await mailauthSeal(withDkimSignatures(original, 1000), 'none');
  const { stage: s } = stage();
  const tx = testTransaction(message);
  const outcome = await s.run(tx, new AbortController().signal);
  expect(arcOf(outcome)).toMatchObject({ result: 'pass', instance: 1 });
  expect(dns.queries.map((q) => q.name)).toEqual(['rsa._domainkey.example.org']);
});

test('1,000 DKIM-Signatures and a lone ARC-Seal: arc=fail, and DNS is not asked at all', async () => {
  const sealed = (await mailauthSeal(original, 'none')).toString('latin1');
  const seal = sealed.match(/^ARC-Seal:.*\r\n(?:[ \t].*\r\n)*/m)![0];
  const { stage: s } = stage();
  const tx = testTransaction(withDkimSignatures(Buffer.concat([Buffer.from(seal, 'latin1'), original]), 1000));
  const outcome = await s.run(tx, new AbortController().signal);
  expect(arcOf(outcome)).toMatchObject({ result: 'fail', comment: 'i=1 has no AAR' });
  expect(dns.queries).toEqual([]);
});

/** `count` ARC sets, unsigned: the limits apply before any signature is looked at. */
function fakeSets(count: number): Buffer {
  const sets = Array.from({ length: count }, (_, k) => {
    const i = count - k;
    return `ARC-Seal: i=${i}; a=rsa-sha256; cv=${i === 1 ? 'none' : 'pass'}; d=example.org; s=s${i}; b=AAAA\r\nARC-Message-Signature: i=${i}; a=rsa-sha256; d=example.org; s=s${i}; h=from; bh=AAAA; b=AAAA\r\nARC-Authentication-Results: i=${i}; x.example; none\r\n`;
  });
  return Buffer.concat([Buffer.from(sets.join(''), 'latin1'), original]);
}

test('more than 50 ARC sets fail without a DNS query', async () => {
  const { stage: s } = stage({ dkimVerify: { maxSignatures: 100 } });
  const tx = testTransaction(fakeSets(51));
  const outcome = await s.run(tx, new AbortController().signal);
  expect(arcOf(outcome)).toMatchObject({ result: 'fail', comment: 'more than 50 ARC sets' });
  expect(outcome.findings).toEqual([{ code: 'ARC_VERIFY_FAIL', detail: 'more than 50 ARC sets' }]);
  expect(dns.queries).toEqual([]);
});

test('a chain needing more signature checks than dkimVerify.maxSignatures fails without a DNS query', async () => {
  const twice = await mailauthSeal(await mailauthSeal(original, 'none'), 'pass');
  const { stage: s } = stage({ dkimVerify: { maxSignatures: 2 } });
  const tx = testTransaction(twice);
  const outcome = await s.run(tx, new AbortController().signal);
  expect(arcOf(outcome)).toMatchObject({ result: 'fail', comment: '2 ARC sets need more than 2 signature checks (dkimVerify.maxSignatures)' });
  expect(dns.queries).toEqual([]);
  // The same chain within the limit passes.
  const within = stage({ dkimVerify: { maxSignatures: 3 } });
  const tx2 = testTransaction(twice);
  expect(arcOf(await within.stage.run(tx2, new AbortController().signal))).toMatchObject({ result: 'pass', instance: 2 });
});

test('a stage aborted before it starts rejects and asks DNS nothing', async () => {
  const message = await mailauthSeal(withDkimSignatures(original, 300), 'none');
  const { stage: s } = stage();
  const ac = new AbortController();
  ac.abort(new Error('stage timed out'));
  await expect(s.run(testTransaction(message), ac.signal)).rejects.toThrow('stage timed out');
  await new Promise((r) => setTimeout(r, 200));
  expect(dns.queries).toEqual([]);
});

test('aborted while its key lookup hangs, the stage rejects at once and makes no further query', async () => {
  const message = await mailauthSeal(withDkimSignatures(original, 300), 'none');
  const saved = dns.zone['rsa._domainkey.example.org'];
  dns.zone['rsa._domainkey.example.org'] = { behaviour: 'timeout' };
  try {
    const { stage: s } = stage({}, 5000);
    const ac = new AbortController();
    const run = s.run(testTransaction(message), ac.signal);
    run.catch(() => undefined);
    const deadline = Date.now() + 2000;
    while (!dns.queries.some((q) => q.name === 'rsa._domainkey.example.org') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    const started = Date.now();
    ac.abort(new Error('stage timed out'));
    const asked = dns.queries.length;
    await expect(run).rejects.toThrow('stage timed out');
    expect(Date.now() - started).toBeLessThan(500);
    await new Promise((r) => setTimeout(r, 300));
    expect(dns.queries.length).toBe(asked);
    expect(dns.queries.map((q) => q.name)).toEqual(['rsa._domainkey.example.org']);
  } finally {
    dns.zone['rsa._domainkey.example.org'] = saved;
  }
});
