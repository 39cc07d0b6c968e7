/**
 * Round trips over real sockets: a message goes into postseal, comes out at the sink, and
 * the exact bytes the sink received are checked by Mail::DKIM and dkimpy with the public
 * keys on the loopback DNS server. Mail::DKIM in Debian 12 has no Ed25519 (it reports those
 * signatures "invalid (unsupported algorithm)", which RFC 8463 4 allows); dkimpy checks both.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { DotStuffer } from '../../src/reinject/smtp-client';
import { startDnsServer, type DnsServer } from '../helpers/dns-server';
import { dkimpy, edKey, mailDkim, rsaKey, writeSigningFiles, zoneFor, type SignatureResult, type TestKey } from '../helpers/dkim-verifiers';
import { startHarness, type Harness } from '../helpers/postseal';
import { startSink, type Sink } from '../helpers/sink';
import { TestClient } from '../helpers/smtp-client';

const fixture = (name: string) => readFileSync(path.join(__dirname, '../fixtures/messages/signing', name));
const dkNofws: TestKey = { ...rsaKey, name: 'dk-nofws', domain: 'dk.example', selector: 'dk1', domainKeys: 'nofws' };
const dkSimple: TestKey = { ...rsaKey, name: 'dk-simple', domain: 'dk-simple.example', selector: 'dk2', domainKeys: 'simple' };
const keys = [rsaKey, edKey, dkNofws, dkSimple];

let dns: DnsServer;
let sink: Sink;
let h: Harness;

beforeAll(async () => {
  dns = await startDnsServer(zoneFor(keys));
  sink = await startSink();
  const signing = writeSigningFiles(keys, [
    { author: 'example.com', keys: ['example-rsa', 'example-ed'] },
    { author: '*.example.com', keys: ['example-rsa'] },
    { author: 'customer.example.org', keys: ['example-rsa'], thirdParty: true },
    { author: 'dk.example', keys: ['dk-nofws'] },
    { author: 'dk-simple.example', keys: ['dk-simple'] },
  ]);
  const originating = { originating: true, stages: ['loop-guard', 'header-sanity', 'seven-bit', 'dkim-sign'], loopGuard: { traceHeader: false } };
  h = await startHarness({
    forwardPort: sink.port,
    banks: {
      default: {
        ...originating,
        dkimSign: { unsignableFrom: 'reject', envelopeSenderFallback: true, bySender: [{ senders: ['news@example.com'], canonicalization: 'simple/relaxed' }] },
      },
      SIMPLE: { dkimSign: { signature: { canonicalization: 'simple/simple' } } },
      LIMITS: { dkimSign: { signature: { bodyLength: true, ttlSeconds: 3600, identity: 'author' } } },
      NOCHECKS: { stages: ['dkim-sign'], dkimSign: { unsignableFrom: 'pass' } },
      SIGN_ONLY: { stages: ['dkim-sign'], dkimSign: { unsignableFrom: 'reject' } },
      // The bank as shipped in policy-banks/, on top of this test's default.
      SHIPPED_NOCHECKS: YAML.parse(readFileSync(path.join(__dirname, '../../policy-banks/NOCHECKS.yaml'), 'utf8')),
    },
    listeners: [{ bank: 'default' }, { bank: 'SIMPLE' }, { bank: 'LIMITS' }, { bank: 'NOCHECKS' }, { bank: 'SHIPPED_NOCHECKS' }, { bank: 'SIGN_ONLY' }],
    main: { dkimSign: signing },
  });
});

afterAll(async () => {
  await h.close();
  await sink.close();
  await dns.close();
});

async function send(data: Buffer | string, opts: { bank?: string; from?: string; stuff?: boolean } = {}) {
  const raw = Buffer.isBuffer(data) ? data : Buffer.from(data, 'latin1');
  const wire = opts.stuff === false ? raw : new DotStuffer().push(raw);
  const before = sink.received.length;
  const c = await TestClient.connect(h.app.portOf(opts.bank ?? 'default'));
  const r = await c.send({ from: opts.from ?? 'joerg@example.com', to: ['anna@example.net'], data: wire });
  await c.quit();
  const log = h.logs.filter((l) => l.msg === 'message').pop()!;
  return { reply: r.final!, got: sink.received.length > before ? sink.received[sink.received.length - 1].data : undefined, findings: log.findings as string[] };
}

async function verifyBoth(message: Buffer): Promise<{ perl: SignatureResult[]; py: SignatureResult[] }> {
  const [perl, py] = await Promise.all([mailDkim(message, dns.server), dkimpy(message, dns.server)]);
  return { perl, py };
}

/** Both verifiers pass every signature they support; Mail::DKIM skips Ed25519. */
async function expectVerified(message: Buffer, signatures: number): Promise<void> {
  const { perl, py } = await verifyBoth(message);
  expect(py.filter((r) => r.type === 'dkim').map((r) => r.result)).toEqual(Array(signatures).fill('pass'));
  for (const r of perl) expect(r.algorithm === 'ed25519-sha256' ? r.detail : r.result).toMatch(r.algorithm === 'ed25519-sha256' ? /unsupported algorithm/ : /^pass$/);
  expect(perl.filter((r) => r.result === 'pass').length).toBeGreaterThan(0);
}

const signatureFields = (message: Buffer): string[] => message.toString('latin1').match(/^DKIM-Signature:.*\r\n(?:[ \t].*\r\n)*/gm) ?? [];

describe('dkim-sign', () => {
  it('signs 8-bit text/plain after making it quoted-printable, with RSA and Ed25519, and both verify', async () => {
    const { reply, got, findings } = await send(fixture('8bit-text.eml'));
    expect(reply.code).toBe(250);
    expect(got!.every((b) => b < 0x80)).toBe(true);
    expect(findings).toEqual(['SEVEN_BIT_CONVERTED(quoted-printable: 1)', 'DKIM_SIGN_SIGNED(d=example.com s=rsa2048 rsa-sha256, d=example.com s=ed1 ed25519-sha256)']);
    await expectVerified(got!, 2);
  });

  it('signs a multipart/alternative whose HTML part was 8-bit', async () => {
    const { got } = await send(fixture('multipart-alternative-8bit-html.eml'));
    await expectVerified(got!, 2);
  });

  it('signs a message whose binary attachment became base64', async () => {
    const { got } = await send(fixture('8bit-attachment.eml'));
    await expectVerified(got!, 2);
  });

  it('leaves already-7-bit mail byte-identical apart from the signatures on top', async () => {
    const raw = fixture('seven-bit.eml');
    const { got } = await send(raw);
    const sigs = signatureFields(got!);
    expect(sigs).toHaveLength(2);
    expect(got!.subarray(sigs.join('').length).equals(raw)).toBe(true);
    await expectVerified(got!, 2);
  });

  it('folds the DKIM-Signature at 78 columns with b= last', async () => {
    const { got } = await send(fixture('seven-bit.eml'));
    for (const sig of signatureFields(got!)) {
      expect(sig.split('\r\n').every((l) => l.length <= 78)).toBe(true);
      expect(sig.replace(/\r\n[ \t]/g, ' ')).toMatch(/; b=[A-Za-z0-9+/= ]+\r\n$/);
    }
  });

  it('signs folded long headers (a 300-character List-Unsubscribe) as they are', async () => {
    const urls = Array.from({ length: 6 }, (_, i) => `<https://lists.example.com/unsubscribe/${'x'.repeat(30)}${i}>`).join(',\r\n ');
    const msg = `From: news@example.com\r\nTo: anna@example.net\r\nSubject: long\r\nList-Unsubscribe: ${urls}\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\nbody\r\n`;
    expect(urls.length).toBeGreaterThan(300);
    const { got } = await send(msg);
    expect(got!.toString('latin1')).toContain(`List-Unsubscribe: ${urls}\r\n`);
    expect(signatureFields(got!)[0]).toMatch(/list-unsubscribe/);
    await expectVerified(got!, 2);
  });

  it('signs lines that start with dots, which the SMTP hops stuff and unstuff', async () => {
    const { got } = await send('From: joerg@example.com\r\nSubject: dots\r\n\r\n.\r\n..\r\n.hidden\r\n');
    expect(got!.toString()).toContain('\r\n\r\n.\r\n..\r\n.hidden\r\n');
    await expectVerified(got!, 2);
  });

  it('signs an empty body', async () => {
    const { got } = await send('From: joerg@example.com\r\nSubject: empty\r\n\r\n');
    await expectVerified(got!, 2);
  });

  it('signs a body with trailing blank lines', async () => {
    const { got } = await send('From: joerg@example.com\r\nSubject: trailing\r\n\r\ntext\r\n\r\n\r\n  \r\n\r\n');
    await expectVerified(got!, 2);
  });

  it('signs bare-LF mail as the reinjection sends it, with CRLF', async () => {
    const { got } = await send('From: joerg@example.com\nSubject: lf\n\nline one\nline two\n', { stuff: false });
    expect(got!.toString()).toContain('line one\r\nline two\r\n');
    await expectVerified(got!, 2);
  });

  it('signs with simple/simple canonicalization when the bank says so', async () => {
    const { got } = await send(fixture('multipart-alternative-8bit-html.eml'), { bank: 'SIMPLE' });
    expect(signatureFields(got!)[0]).toContain('c=simple/simple;');
    await expectVerified(got!, 2);
  });

  it('uses the options of the first bySender entry that matches the author', async () => {
    const { got } = await send('From: news@example.com\r\nSubject: by sender\r\n\r\nbody  \r\n');
    expect(signatureFields(got!)[0]).toContain('c=simple/relaxed;');
    await expectVerified(got!, 2);
  });

  it('adds l=, x= and i= when the options ask for them, and l= lets a footer appended later still verify', async () => {
    const { got } = await send('From: Joerg <joerg@example.com>\r\nSubject: limits\r\n\r\nbody\r\n', { bank: 'LIMITS' });
    const sig = signatureFields(got!)[0].replace(/\r\n[ \t]/g, ' ');
    const t = Number(/ t=(\d+);/.exec(sig)![1]);
    expect(sig).toMatch(/ l=6;/);
    expect(sig).toContain(` x=${t + 3600};`);
    expect(sig).toContain(' i=joerg@example.com;');
    await expectVerified(got!, 2);
    await expectVerified(Buffer.concat([got!, Buffer.from('-- \r\nappended by a list\r\n')]), 2);
  });

  it('oversigns: a second From or Subject added on top makes both verifiers fail', async () => {
    const { got } = await send(fixture('seven-bit.eml'));
    for (const added of ['From: mallory@evil.example\r\n', 'Subject: pay now\r\n']) {
      const { perl, py } = await verifyBoth(Buffer.concat([Buffer.from(added), got!]));
      expect(py.map((r) => r.result)).toEqual(['fail', 'fail']);
      expect(perl.find((r) => r.algorithm === 'rsa-sha256')!.result).toBe('fail');
    }
  });

  it('signs a subdomain author through a *.parent rule with the parent domain', async () => {
    const { got, findings } = await send('From: a@lists.example.com\r\nSubject: sub\r\n\r\nbody\r\n');
    expect(findings).toContain('DKIM_SIGN_SIGNED(d=example.com s=rsa2048 rsa-sha256)');
    await expectVerified(got!, 1);
  });

  it('signs a third-party author domain with the configured d=', async () => {
    const { got, findings } = await send('From: a@customer.example.org\r\nSubject: third party\r\n\r\nbody\r\n');
    expect(findings).toContain('DKIM_SIGN_SIGNED(d=example.com s=rsa2048 rsa-sha256)');
    await expectVerified(got!, 1);
  });

  it('passes mail of a domain without a key unsigned and logs no_key_for_domain', async () => {
    const { reply, got, findings } = await send('From: a@elsewhere.example\r\nSubject: no key\r\n\r\nbody\r\n', { from: 'a@elsewhere.example' });
    expect(reply.code).toBe(250);
    expect(signatureFields(got!)).toEqual([]);
    expect(findings).toContain('DKIM_SIGN_NO_KEY(no_key_for_domain elsewhere.example)');
  });

  it('rejects mail without From with 550 5.6.0 when unsignableFrom is reject', async () => {
    const { reply, got } = await send('Subject: no from\r\n\r\nbody\r\n');
    expect([reply.code, reply.text]).toEqual([550, '5.6.0 Message header malformed: no From field, cannot sign']);
    expect(got).toBeUndefined();
  });

  it('rejects two From fields with a reply that names them when unsignableFrom is reject', async () => {
    const { reply, got, findings } = await send('From: a@example.com\r\nFrom: b@example.com\r\n\r\nbody\r\n', { bank: 'SIGN_ONLY' });
    expect([reply.code, reply.text]).toEqual([550, '5.6.0 Message header malformed: several From fields, cannot sign']);
    expect(findings).toContain('DKIM_SIGN_MULTIPLE_FROM(2 From fields)');
    expect(got).toBeUndefined();
  });

  it('passes mail with two From fields unsigned when unsignableFrom is pass', async () => {
    const { reply, got, findings } = await send('From: a@example.com\r\nFrom: b@example.com\r\n\r\nbody\r\n', { bank: 'NOCHECKS' });
    expect(reply.code).toBe(250);
    expect(signatureFields(got!)).toEqual([]);
    expect(findings).toContain('DKIM_SIGN_MULTIPLE_FROM(2 From fields)');
  });

  it('falls back to the envelope sender domain when From holds no address', async () => {
    const { got, findings } = await send('From: undisclosed-recipients:;\r\nSubject: group\r\n\r\nbody\r\n', { from: 'bounce@example.com' });
    expect(findings).toContain('DKIM_SIGN_SIGNED(d=example.com s=rsa2048 rsa-sha256, d=example.com s=ed1 ed25519-sha256)');
    expect(signatureFields(got!)).toHaveLength(2);
  });

  it('NOCHECKS signs and changes nothing else, 8-bit content included', async () => {
    const raw = fixture('8bit-text.eml');
    const { got, findings } = await send(raw, { bank: 'NOCHECKS' });
    expect(findings).toEqual(['DKIM_SIGN_SIGNED(d=example.com s=rsa2048 rsa-sha256, d=example.com s=ed1 ed25519-sha256)']);
    expect(got!.subarray(signatureFields(got!).join('').length).equals(raw)).toBe(true);
    await expectVerified(got!, 2);
  });

  it('the shipped NOCHECKS bank makes 8-bit mail 7-bit before it signs, so a relay that downgrades cannot break the signature', async () => {
    const { got, findings } = await send(fixture('8bit-text.eml'), { bank: 'SHIPPED_NOCHECKS' });
    expect(findings).toEqual(expect.arrayContaining([expect.stringMatching(/^SEVEN_BIT_CONVERTED/), expect.stringMatching(/^DKIM_SIGN_SIGNED/)]));
    expect(got!.every((b) => b < 0x80)).toBe(true);
    expect(got!.toString()).not.toMatch(/^X-Postseal-Trace:/m);
    await expectVerified(got!, 2);
  });

  it.each([
    ['nofws', 'dk.example'],
    ['simple', 'dk-simple.example'],
  ])('adds a DomainKey-Signature (%s) that Mail::DKIM verifies, next to the DKIM one', async (canon, domain) => {
    const { got, findings } = await send(fixture('multipart-alternative-8bit-html.eml').toString('latin1').replace('From: joerg@example.com', `From: joerg@${domain}`));
    expect(findings).toContain(
      `DKIM_SIGN_SIGNED(d=${domain} s=${domain === 'dk.example' ? 'dk1' : 'dk2'} rsa-sha256, d=${domain} s=${domain === 'dk.example' ? 'dk1' : 'dk2'} domainkeys)`,
    );
    expect(got!.toString()).toContain(`DomainKey-Signature: a=rsa-sha1; c=${canon}; d=${domain};`);
    const { perl, py } = await verifyBoth(got!);
    expect(perl.map((r) => [r.type, r.result])).toEqual([
      ['dkim', 'pass'],
      ['domainkeys', 'pass'],
    ]);
    expect(py.map((r) => r.result)).toEqual(['pass']);
  });
});
