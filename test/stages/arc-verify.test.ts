/**
 * arc-verify (RFC 8617 5.2) on chains made by mailauth's sealer and by hand, keys from a
 * loopback DNS server: what passes, and each rule of RFC 8617 / RFC 6376 3.2 and 3.5 that
 * makes a chain fail.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { StageDeps } from '../../src/pipeline/stage';
import { arcVerifyStage } from '../../src/stages/arc-verify';
import { corpusDir, corpusMessage, corpusZone } from '../helpers/auth';
import { handSeal, mailauthSeal } from '../helpers/arc-chain';
import { loadTestBank } from '../helpers/banks';
import { startDnsServer, type DnsServer } from '../helpers/dns-server';
import { resultsAfter, stageFor, testStageDeps, testTransaction } from '../helpers/stage-run';
import { ARC_RESULT } from '../../src/lib/authentication-results';

let dns: DnsServer;
let auth: StageDeps;
beforeAll(async () => {
  dns = await startDnsServer(structuredClone(corpusZone));
  auth = testStageDeps(dns);
});
afterAll(() => dns.close());

const original = corpusMessage('relaxed-relaxed.eml');

async function arcOf(message: Buffer, bank: Record<string, unknown> = {}) {
  const tx = testTransaction(message);
  const outcome = await stageFor(arcVerifyStage, loadTestBank(bank), auth).run(tx, new AbortController().signal);
  return { ...resultsAfter(outcome).get(ARC_RESULT)!, findings: outcome.findings };
}

test('a chain of two sets made by mailauth passes: arc=pass i=2', async () => {
  const twice = await mailauthSeal(await mailauthSeal(original, 'none'), 'pass');
  expect(await arcOf(twice)).toMatchObject({ result: 'pass', instance: 2, comment: 'i=2', findings: [{ code: 'ARC_VERIFY_PASS', detail: 'i=2' }] });
});

test('an Ed25519 set made by mailauth on top of an RSA set passes', async () => {
  const ed = { domain: 'example.com', selector: 'ed', keyPem: readFileSync(path.join(corpusDir, 'keys/ed25519.pem')) };
  const twice = await mailauthSeal(await mailauthSeal(original, 'none'), 'pass', ed);
  expect(twice.toString('latin1')).toMatch(/^ARC-Seal: i=2; a=ed25519-sha256;/);
  expect(await arcOf(twice)).toMatchObject({ result: 'pass', instance: 2 });
});

test('a hand-made set with every tag as RFC 8617 writes it passes (the helper is sound)', async () => {
  expect(await arcOf(handSeal(original))).toMatchObject({ result: 'pass', instance: 1 });
});

test('text appended after the newest AMS l= fails the chain, unless dkimVerify.partialBody is pass', async () => {
  const sealed = handSeal(original, { bodyLength: true });
  const appended = Buffer.concat([sealed, Buffer.from('Click here: http://evil.example/\r\n')]);
  expect((await arcOf(sealed)).result).toBe('pass');
  expect(await arcOf(appended)).toMatchObject({ result: 'fail', comment: expect.stringMatching(/l= leaves \d+ body bytes unsigned/) });
  expect((await arcOf(appended, { dkimVerify: { partialBody: 'pass' } })).result).toBe('pass');
});

test('mail without ARC fields is arc=none', async () => {
  expect(await arcOf(original)).toMatchObject({ result: 'none', instance: 0, findings: [{ code: 'ARC_VERIFY_NONE' }] });
});

test('a body changed after sealing fails on the newest AMS body hash, without a DNS query', async () => {
  const sealed = (await mailauthSeal(original, 'none')).toString('latin1').replace('This is corpus', 'This is a changed');
  dns.queries.length = 0;
  expect(await arcOf(Buffer.from(sealed, 'latin1'))).toMatchObject({ result: 'fail', comment: 'i=1 AMS body hash mismatch' });
  expect(dns.queries).toEqual([]);
});

test('a wrong bh= in a correctly signed AMS fails', async () => {
  expect(await arcOf(handSeal(original, { bodyHash: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=' }))).toMatchObject({ result: 'fail', comment: 'i=1 AMS body hash mismatch' });
});

test('a signed header changed after sealing fails on the AMS signature', async () => {
  const sealed = (await mailauthSeal(original, 'none')).toString('latin1').replace('Subject: Corpus', 'Subject: Changed');
  expect(await arcOf(Buffer.from(sealed, 'latin1'))).toMatchObject({ result: 'fail', comment: 'i=1 AMS signature invalid' });
});

describe('ARC-Seal tag lists are read as RFC 6376 3.2 says (each seal correctly signed)', () => {
  test.each([
    ['a duplicate tag', (t: string) => t.replace('d=example.org;', 'd=example.org; d=example.org;'), /AS tag syntax: duplicate tag/],
    ['an upper-case tag name (CV= is not cv=)', (t: string) => t.replace('cv=none', 'CV=none'), /AS missing cv=/],
    ['a tag name starting with a digit', (t: string) => t.replace('t=1780000000;', 't=1780000000; 1x=y;'), /AS tag syntax: invalid tag name/],
    ['an empty tag (;;)', (t: string) => t.replace('cv=none;', 'cv=none;;'), /AS tag syntax: empty tag-spec/],
  ])('%s fails', async (_what, sealTags, reason) => {
    const r = await arcOf(handSeal(original, { sealTags }));
    expect(r).toMatchObject({ result: 'fail', findings: [{ code: 'ARC_VERIFY_FAIL' }] });
    expect(r.comment).toMatch(reason);
  });
});

test('an AMS without c= is simple/simple: signed simple/simple it passes', async () => {
  expect(await arcOf(handSeal(original, { canon: 'simple/simple', cTag: null }))).toMatchObject({ result: 'pass' });
});

test('an AMS without c= is simple/simple only: signed relaxed/relaxed it fails', async () => {
  expect(await arcOf(handSeal(original, { canon: 'relaxed/relaxed', cTag: null }))).toMatchObject({ result: 'fail', comment: 'i=1 AMS signature invalid' });
});

test('i=1 must say cv=none', async () => {
  expect(await arcOf(handSeal(original, { sealTags: (t) => t.replace('cv=none', 'cv=pass') }))).toMatchObject({ result: 'fail', comment: 'i=1 AS cv=pass, expected cv=none' });
});

test('a newest seal with cv=fail fails the chain', async () => {
  const r = await arcOf(await mailauthSeal(await mailauthSeal(original, 'none'), 'fail'));
  expect(r).toMatchObject({ result: 'fail', instance: 2, comment: 'i=2 cv=fail' });
});

test('a gap in the instances fails', async () => {
  const sealed = (await mailauthSeal(original, 'none')).toString('latin1').replace(/^(ARC-[A-Za-z-]+: )i=1;/gm, '$1i=2;');
  expect(await arcOf(Buffer.from(sealed, 'latin1'))).toMatchObject({ result: 'fail', comment: 'i=1 has no AAR' });
});

test('two ARC-Seals with the same instance fail', async () => {
  const sealed = await mailauthSeal(original, 'none');
  const seal = sealed.toString('latin1').match(/^ARC-Seal:.*\r\n(?:[ \t].*\r\n)*/m)![0];
  expect(await arcOf(Buffer.concat([Buffer.from(seal, 'latin1'), sealed]))).toMatchObject({ result: 'fail', comment: 'i=1 has more than one AS' });
});

test('a seal key that is not published fails with the key name', async () => {
  const sealed = await mailauthSeal(original, 'none', { selector: 'missing' });
  expect(await arcOf(sealed)).toMatchObject({ result: 'fail', comment: 'no key for missing._domainkey.example.org' });
});
