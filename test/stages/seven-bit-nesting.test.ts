/**
 * Deeply nested MIME through the ORIGINATING path over real sockets: thousands of nested
 * message/rfc822 parts or multiparts (a few hundred KB from anyone who can submit mail) must
 * not overflow the stack and tempfail for ever. The stage walks sevenBit.maxMimeDepth levels,
 * converts what it can, and passes the deeper part on byte for byte with a finding; the
 * result is signed and the signature verifies.
 */
import { dkimpy, rsaKey, writeSigningFiles, zoneFor } from '../helpers/dkim-verifiers';
import { startDnsServer, type DnsServer } from '../helpers/dns-server';
import { startHarness, type Harness } from '../helpers/postseal';
import { startSink, type Sink } from '../helpers/sink';
import { TestClient } from '../helpers/smtp-client';
import { MAX_MIME_PARTS } from '../../src/lib/mime/structure';
import { sevenBitBankSchema } from '../../src/stages/seven-bit/schema';

const DEFAULT_DEPTH = sevenBitBankSchema.properties.maxMimeDepth.default;

let dns: DnsServer;
let sink: Sink;
let h: Harness;

beforeAll(async () => {
  dns = await startDnsServer(zoneFor([rsaKey]));
  sink = await startSink();
  const signing = writeSigningFiles([rsaKey], [{ author: 'example.com', keys: ['example-rsa'] }]);
  // As policy-banks/ORIGINATING.yaml, on the harness's sink.
  const originating = { originating: true, stages: ['loop-guard', 'header-sanity', 'authentication-results', 'seven-bit', 'dkim-sign'], loopGuard: { traceHeader: false } };
  h = await startHarness({
    forwardPort: sink.port,
    banks: {
      ORIGINATING: { ...originating, forward: { host: '127.0.0.1', port: sink.port } },
      SHALLOW: { ...originating, forward: { host: '127.0.0.1', port: sink.port }, sevenBit: { maxMimeDepth: 3 } },
    },
    listeners: [{ bank: 'ORIGINATING' }, { bank: 'SHALLOW' }],
    main: { dkimSign: signing },
  });
});

afterAll(async () => {
  await h.close();
  await sink.close();
  await dns.close();
});

const HEAD = 'From: joerg@example.com\r\nTo: anna@example.net\r\nSubject: deep\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=top\r\n\r\n';
/** A first part the stage must convert, so it does rewrite the message around the deep one. */
const FIRST = '--top\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\xfc\xdfe oben\r\n--top\r\n';
const BOTTOM = 'Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\xfc\xdfe unten\r\n';

/** `levels` message/rfc822 parts, each the body of the one before, 8-bit text at the bottom. */
const nestedMessages = (levels: number) => 'Content-Type: message/rfc822\r\n\r\n'.repeat(levels) + BOTTOM;

/** `levels` multiparts, each the only part of the one before, 8-bit text at the bottom. */
function nestedMultiparts(levels: number): string {
  const out: string[] = [];
  for (let i = 1; i <= levels; i++) out.push(`Content-Type: multipart/mixed; boundary=n${i}\r\n\r\n--n${i}\r\n`);
  out.push(BOTTOM);
  for (let i = levels; i >= 1; i--) out.push(`--n${i}--\r\n`);
  return out.join('');
}

async function send(deep: string, bank = 'ORIGINATING') {
  const raw = Buffer.from(`${HEAD}${FIRST}${deep}\r\n--top--\r\n`, 'latin1');
  const before = sink.received.length;
  const c = await TestClient.connect(h.app.portOf(bank));
  const r = await c.send({ from: 'joerg@example.com', to: ['anna@example.net'], data: raw });
  await c.quit();
  const log = h.logs.filter((l) => l.msg === 'message').pop()!;
  const got = sink.received.length > before ? sink.received[sink.received.length - 1].data : Buffer.alloc(0);
  return { reply: r.final!, got, text: got.toString('latin1'), findings: log.findings as string[] };
}

/** The part after the first, nesting and all, must arrive as it was sent. */
const deepPartOf = (text: string) => text.slice(text.indexOf('Gr=FC=DFe oben\r\n--top\r\n') + 'Gr=FC=DFe oben\r\n--top\r\n'.length);

describe('seven-bit on deeply nested MIME (ORIGINATING path)', () => {
  it('delivers 3,000 nested message/rfc822 parts, converting the first part and passing the nesting on byte for byte with a finding', async () => {
    const deep = nestedMessages(3000);
    const { reply, text, got, findings } = await send(deep);
    expect(reply.code).toBe(250);
    expect(text).toContain('Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe oben\r\n--top\r\n');
    expect(deepPartOf(text)).toBe(`${deep}\r\n--top--\r\n`);
    expect(findings).toContain('SEVEN_BIT_CONVERTED(quoted-printable: 1)');
    const unconvertible = findings.find((f) => f.startsWith('SEVEN_BIT_UNCONVERTIBLE('));
    expect(unconvertible).toContain(`MIME nesting deeper than ${DEFAULT_DEPTH}`);
    expect((await dkimpy(got, dns.server)).map((s) => s.result)).toEqual(['pass']);
  });

  it('delivers 8,000 nested multiparts, converting the first part and passing the nesting on byte for byte with a finding', async () => {
    const deep = nestedMultiparts(8000);
    const { reply, text, got, findings } = await send(deep);
    expect(reply.code).toBe(250);
    expect(deepPartOf(text)).toBe(`${deep}\r\n--top--\r\n`);
    expect(findings.find((f) => f.startsWith('SEVEN_BIT_UNCONVERTIBLE('))).toContain(`MIME nesting deeper than ${DEFAULT_DEPTH}`);
    expect((await dkimpy(got, dns.server)).map((s) => s.result)).toEqual(['pass']);
  });

  it("passes the parts past the walk's part cap on byte for byte, converting those before it, with a finding", async () => {
    const plain = 'Content-Type: text/plain\r\n\r\nx\r\n--top\r\n'.repeat(MAX_MIME_PARTS);
    const { reply, text, got, findings } = await send(`${plain}${BOTTOM}`);
    expect(reply.code).toBe(250);
    expect(text).toContain('Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe oben\r\n--top\r\n');
    expect(text).toContain(`${plain.slice(-500)}${BOTTOM}\r\n--top--\r\n`);
    expect(findings.find((f) => f.startsWith('SEVEN_BIT_UNCONVERTIBLE('))).toMatch(new RegExp(`more than ${MAX_MIME_PARTS} MIME parts; left as it is`));
    expect((await dkimpy(got, dns.server)).map((s) => s.result)).toEqual(['pass']);
  });

  it('names the part where the walk stopped, at the depth the bank sets', async () => {
    const { reply, findings } = await send(nestedMultiparts(10), 'SHALLOW');
    expect(reply.code).toBe(250);
    // body (0) > body.2 (1) > body.2.1 (2) > body.2.1.1 (3): the multipart at depth 3 is opaque.
    expect(findings).toContain('SEVEN_BIT_UNCONVERTIBLE(body.2.1.1: MIME nesting deeper than 3; left as it is)');
  });

  it('converts 8-bit parts at the depth limit, which are still walked', async () => {
    const { reply, text, findings } = await send(nestedMultiparts(2), 'SHALLOW');
    expect(reply.code).toBe(250);
    expect(findings).toContain('SEVEN_BIT_CONVERTED(quoted-printable: 2)');
    expect(findings.some((f) => f.startsWith('SEVEN_BIT_UNCONVERTIBLE'))).toBe(false);
    expect(text).toContain('Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe unten\r\n--n2--\r\n');
  });
});
