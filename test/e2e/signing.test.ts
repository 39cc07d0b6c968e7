/**
 * Signing through a real Postfix: an 8-bit message from the submission port is delivered
 * 7-bit and signed (RSA and Ed25519), and the delivered copy verifies with Mail::DKIM and
 * dkimpy; so does one whose From is in a subdomain that masquerade_domains covers, which the
 * reinjection smtpd must not rewrite after signing; mail from the Internet with one of our
 * domains in From goes through the default bank and is not signed.
 */
import { startDnsServer, type DnsServer } from '../helpers/dns-server';
import { dkimpy, edKey, mailDkim, rsaKey, writeSigningFiles, zoneFor, type TestKey } from '../helpers/dkim-verifiers';
import { startE2E, type E2E } from './environment';
import { REMOTE_CLIENT, submit, testMail } from './submit';

const keys: TestKey[] = [
  { ...rsaKey, domain: 'example.org' },
  { ...edKey, domain: 'example.org' },
];

/** An mbox entry as the message bytes that were delivered: no "From " line, CRLF line ends. */
const messageOf = (mboxEntry: string) => Buffer.from(mboxEntry.slice(mboxEntry.indexOf('\n') + 1).replace(/\r?\n/g, '\r\n'), 'latin1');

describe('signing through a real Postfix', () => {
  let e2e: E2E;
  let dns: DnsServer;
  beforeAll(async () => {
    const zone = zoneFor(keys);
    dns = await startDnsServer(zone);
    const rules = [
      { author: 'example.org', keys: ['example-rsa', 'example-ed'] },
      { author: '*.example.org', keys: ['example-rsa'] },
    ];
    // Masquerading is usual on a host that signs: host.example.org becomes example.org.
    e2e = await startE2E(
      structuredClone(zone),
      { dkimSign: writeSigningFiles(keys, rules) },
      { beforePostseal: (postfix) => postfix.setParameters({ masquerade_domains: 'example.org' }) },
    );
  }, 120_000);
  afterAll(async () => {
    await e2e?.close();
    await dns?.close();
  }, 60_000);

  it('delivers an 8-bit message from the submission port 7-bit, signed with RSA and Ed25519, and both verifiers pass', async () => {
    const mail = testMail({ from: 'alice@example.org', subject: 'signed' });
    mail.data = `${mail.data.replace('\r\n\r\n', '\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n')}Gr\u00fc\u00dfe aus K\u00f6ln\r\n`;
    // TestClient writes strings as UTF-8: the body goes out as 8-bit bytes.
    await submit(e2e.ports[587], mail);
    const copies = await e2e.postfix.delivered(mail.messageId, () => e2e.explain());
    expect(copies).toHaveLength(1);
    const delivered = messageOf(copies[0]);
    expect(delivered.every((b) => b < 0x80)).toBe(true);
    expect(delivered.toString('latin1')).toContain('Content-Transfer-Encoding: quoted-printable\r\n');
    const [perl, py] = await Promise.all([mailDkim(delivered, dns.server), dkimpy(delivered, dns.server)]);
    expect(py.map((r) => `${r.algorithm} ${r.result}`)).toEqual(['rsa-sha256 pass', 'ed25519-sha256 pass']);
    expect(perl.map((r) => `${r.algorithm} ${r.result}`)).toEqual(['rsa-sha256 pass', 'ed25519-sha256 invalid']);
  });

  it('delivers mail from a masqueraded subdomain as signed: the reinjection smtpd does not rewrite its From after signing', async () => {
    // From a local client (Postfix's smtp client says XFORWARD SOURCE=LOCAL to postseal), with
    // address mappings left to the reinjection smtpd (receive_override_options in main.cf).
    const mail = testMail({ from: 'bob@host.example.org', subject: 'masqueraded' });
    await submit(e2e.ports[587], mail);
    const copies = await e2e.postfix.delivered(mail.messageId, () => e2e.explain());
    expect(copies[0]).toMatch(/^From: <bob@host\.example\.org>\r?$/m);
    const py = await dkimpy(messageOf(copies[0]), dns.server);
    expect(py.map((r) => `${r.domain} ${r.result}`)).toEqual(['example.org pass']);
  });

  it('does not sign mail from the Internet that claims one of our domains', async () => {
    const mail = testMail({ from: 'alice@example.org', subject: 'inbound with our From' });
    await submit(e2e.ports[25], mail, REMOTE_CLIENT);
    const copies = await e2e.postfix.delivered(mail.messageId, () => e2e.explain());
    expect(copies).toHaveLength(1);
    expect(copies[0]).not.toMatch(/^DKIM-Signature:/m);
  });
});
