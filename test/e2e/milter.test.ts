/**
 * postseal as a milter of a real Postfix (examples/postfix/milter.cf, docs/milter.md): mail
 * from the submission port ({daemon_name} ORIGINATING) is delivered 7-bit and DKIM-signed,
 * and the delivered copy verifies with dkimpy and Mail::DKIM, as does a local submission
 * (sendmail, non_smtpd_milters), also to more recipients than the bank's maxRecipients; inbound mail loses a forged
 * Authentication-Results and gets ours on top; a DMARC p=reject failure is Postfix's 550 to the
 * client, as is 550 5.6.0 for a message with thousands of forged fields to remove; a client
 * slower than the idle timeout is served; with postseal stopped,
 * milter_default_action = tempfail makes Postfix answer 4xx.
 */
import { execFile } from 'node:child_process';
import { startDnsServer, type DnsServer } from '../helpers/dns-server';
import { dkimpy, mailDkim, rsaKey, writeSigningFiles, zoneFor, type TestKey } from '../helpers/dkim-verifiers';
import { startSink, type Sink } from '../helpers/sink';
import { TestClient } from '../helpers/smtp-client';
import { startE2E, type E2E } from './environment';
import { MAIL_DOMAIN } from './postfix';
import { FILTER_HOSTNAME } from './postseal-daemon';
import { REMOTE_CLIENT, submit, testMail } from './submit';
import { waitFor } from './wait';

const keys: TestKey[] = [{ ...rsaKey, domain: 'example.org' }];
const messageOf = (mboxEntry: string) => Buffer.from(mboxEntry.slice(mboxEntry.indexOf('\n') + 1).replace(/\r?\n/g, '\r\n'), 'latin1');

describe('postseal as a milter of a real Postfix', () => {
  let e2e: E2E;
  let dns: DnsServer;
  /** The next hop for relay.test, reached through Postfix's smtp client; no 8BITMIME, as an old relay. */
  let nextHop: Sink;
  beforeAll(async () => {
    const zone = { ...zoneFor(keys), '_dmarc.strict.test': { TXT: ['v=DMARC1; p=reject'] } };
    dns = await startDnsServer(zone);
    nextHop = await startSink({ options: { hide8BITMIME: true } });
    e2e = await startE2E(
      structuredClone(zone),
      {
        dkimSign: writeSigningFiles(keys, [{ author: 'example.org', keys: ['example-rsa'] }]),
        listeners: [
          { address: '127.0.0.1', port: 10030, bank: 'default', protocol: 'milter' },
          { address: '127.0.0.1', port: 10031, bank: 'ORIGINATING', protocol: 'milter' },
        ],
        bankRules: { macros: [{ macro: '{daemon_name}', values: ['ORIGINATING'], bank: 'ORIGINATING' }] },
      },
      // The shortest idle timeout: a client slower than it still gets its mail through (below).
      {
        beforePostseal: async (postfix) => {
          await postfix.setParameters({ transport_maps: `inline:{relay.test=smtp:[127.0.0.1]:${nextHop.port}}`, smtp_tls_security_level: 'none' }, false);
          await postfix.enableMilter();
        },
        // A local submission to more recipients than this is still delivered (below).
        banks: { default: { timeouts: { socketIdleTimeoutMs: 1000 } }, ORIGINATING: { maxRecipients: 2 } },
      },
    );
  }, 120_000);
  afterAll(async () => {
    await e2e?.close();
    await dns?.close();
    await nextHop?.close();
  }, 60_000);

  it('delivers an 8-bit message from the submission port 7-bit and signed, and the delivered copy verifies', async () => {
    const mail = testMail({ from: 'alice@example.org', subject: 'milter signed' });
    mail.data = `${mail.data.replace('\r\n\r\n', '\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n')}Gr\u00fc\u00dfe aus K\u00f6ln\r\n`;
    const queueId = await submit(e2e.ports[587], mail);
    const copies = await e2e.postfix.delivered(mail.messageId, () => e2e.explain());
    expect(copies).toHaveLength(1);
    // The bank from {daemon_name}, Postfix's queue id from {i}: one grep joins both logs.
    const line = await waitFor('the log line of the message', async () => e2e.postseal.logs.find((l) => l.msg === 'message' && l.queueId === queueId));
    expect(line).toMatchObject({ protocol: 'milter', bank: 'ORIGINATING', verdict: 'pass' });
    const delivered = messageOf(copies[0]);
    expect(delivered.every((b) => b < 0x80)).toBe(true);
    expect(delivered.toString('latin1')).toContain('Content-Transfer-Encoding: quoted-printable\r\n');
    const [perl, py] = await Promise.all([mailDkim(delivered, dns.server), dkimpy(delivered, dns.server)]);
    expect(py.map((r) => `${r.algorithm} ${r.result}`)).toEqual(['rsa-sha256 pass']);
    expect(perl.map((r) => `${r.algorithm} ${r.result}`)).toEqual(['rsa-sha256 pass']);
    // One queue pass: cleanup took the message in once (a content filter makes it twice).
    expect(e2e.postfix.maillog().split(`message-id=<${mail.messageId}>`)).toHaveLength(2);
  });

  it("folds a header line over 998 octets before signing, so Postfix's smtp client does not break it at the next hop", async () => {
    const mail = testMail({ from: 'alice@example.org', subject: 'long cc' });
    mail.to = 'user@relay.test';
    // 60 addresses on one line of 1,400 octets, as some MUAs write them.
    const cc = Array.from({ length: 60 }, (_, i) => `user${i}@relay.test`).join(', ');
    mail.data = mail.data.replace(/^To: .*$/m, `To: <${mail.to}>\r\nCc: ${cc}`);
    const queueId = await submit(e2e.ports[587], mail);
    const got = await waitFor('the message at the next hop', async () => nextHop.received.find((m) => m.data.includes(mail.messageId)), { explain: () => e2e.explain() });
    expect(await e2e.postseal.message(queueId)).toMatchObject({ bank: 'ORIGINATING', verdict: 'pass' });
    expect(
      got.data
        .toString('latin1')
        .split('\r\n')
        .every((l) => l.length <= 998),
    ).toBe(true);
    const [perl, py] = await Promise.all([mailDkim(got.data, dns.server), dkimpy(got.data, dns.server)]);
    expect(py.map((r) => `${r.algorithm} ${r.result}`)).toEqual(['rsa-sha256 pass']);
    expect(perl.map((r) => `${r.algorithm} ${r.result}`)).toEqual(['rsa-sha256 pass']);
  });

  it('signs a local submission (sendmail, pickup) through non_smtpd_milters on the ORIGINATING listener', async () => {
    const mail = testMail({ from: 'alice@example.org', subject: 'milter sendmail' });
    await new Promise<void>((resolve, reject) => {
      const child = execFile('/usr/sbin/sendmail', ['-C', e2e.postfix.configDir, '-f', mail.from, mail.to], (err) => (err ? reject(err) : resolve()));
      child.stdin!.end(mail.data.replace(/\r\n/g, '\n'));
    });
    const copies = await e2e.postfix.delivered(mail.messageId, () => e2e.explain());
    expect(copies).toHaveLength(1);
    const py = await dkimpy(messageOf(copies[0]), dns.server);
    expect(py.map((r) => `${r.algorithm} ${r.result}`)).toEqual(['rsa-sha256 pass']);
  });

  it("delivers a local submission to more recipients than the bank's maxRecipients: Postfix's cleanup cannot take a refused one", async () => {
    const mail = testMail({ from: 'alice@example.org', subject: 'milter many recipients' });
    const to = [mail.to, `lover@${MAIL_DOMAIN}`, `sender@${MAIL_DOMAIN}`];
    await new Promise<void>((resolve, reject) => {
      const child = execFile('/usr/sbin/sendmail', ['-C', e2e.postfix.configDir, '-f', mail.from, ...to], (err) => (err ? reject(err) : resolve()));
      child.stdin!.end(mail.data.replace(/\r\n/g, '\n'));
    });
    // Refused at RCPT, it stayed in the maildrop ("milter configuration error"), retried forever.
    const copies = await e2e.postfix.delivered(mail.messageId, () => e2e.explain());
    expect(copies.length).toBeGreaterThan(0);
    const line = await waitFor('the log line of the message', async () => e2e.postseal.logs.find((l) => l.msg === 'message' && l.from === mail.from && l.rcpts === 3));
    expect(line).toMatchObject({ bank: 'ORIGINATING', verdict: 'pass' });
  });

  it("removes a forged Authentication-Results with our authserv-id from inbound mail and adds ours on top, above Postfix's Received:", async () => {
    const mail = testMail({ from: 'bob@remote.test', subject: 'forged ar' });
    mail.data = `Authentication-Results: ${FILTER_HOSTNAME}; dkim=pass header.d=example.org\r\n${mail.data}`;
    const queueId = await submit(e2e.ports[25], mail, REMOTE_CLIENT);
    const copies = await e2e.postfix.delivered(mail.messageId, () => e2e.explain());
    // The client as Postfix saw it after XCLIENT, for SPF and the network rules.
    const line = await waitFor('the log line of the message', async () => e2e.postseal.logs.find((l) => l.msg === 'message' && l.queueId === queueId));
    expect(line).toMatchObject({ bank: 'default', client: REMOTE_CLIENT.addr });
    const ours = copies[0].match(new RegExp(`^Authentication-Results: ${FILTER_HOSTNAME.replace(/\./g, '\\.')};`, 'gm')) ?? [];
    expect(ours).toHaveLength(1);
    // On top, above Postfix's Received:, although the forged one stood first (below that Received:).
    expect(copies[0].indexOf(ours[0] ?? '')).toBeLessThan(copies[0].search(/^Received: /m));
    expect(copies[0]).not.toContain('dkim=pass header.d=example.org');
    expect(copies[0]).not.toMatch(/^DKIM-Signature:/m);
  });

  it("takes mail from a client that pauses longer than the bank's socketIdleTimeoutMs before RCPT and within DATA", async () => {
    const mail = testMail({ from: 'alice@example.org', subject: 'slow client' });
    const c = await TestClient.connect(e2e.ports[587]);
    try {
      await c.cmd('EHLO slow.example');
      expect((await c.cmd(`MAIL FROM:<${mail.from}>`)).code).toBe(250);
      // Postfix holds MAIL for the milter until RCPT, and the message until the DATA is complete.
      await new Promise((r) => setTimeout(r, 1500));
      expect((await c.cmd(`RCPT TO:<${mail.to}>`)).code).toBe(250);
      expect((await c.cmd('DATA')).code).toBe(354);
      c.write(mail.data.slice(0, 40));
      await new Promise((r) => setTimeout(r, 1500));
      c.write(`${mail.data.slice(40)}.\r\n`);
      expect((await c.read()).code).toBe(250);
    } finally {
      await c.quit();
    }
    const copies = await e2e.postfix.delivered(mail.messageId, () => e2e.explain());
    const py = await dkimpy(messageOf(copies[0]), dns.server);
    expect(py.map((r) => r.result)).toEqual(['pass']);
  });

  it('gives the client Postfix 550 5.7.1 for inbound mail that fails DMARC p=reject', async () => {
    const mail = testMail({ from: 'eve@strict.test', subject: 'dmarc reject' });
    const c = await TestClient.connect(e2e.ports[25]);
    try {
      await c.cmd('EHLO relay.e2e.postseal.test');
      expect((await c.cmd(`XCLIENT ADDR=${REMOTE_CLIENT.addr} NAME=${REMOTE_CLIENT.name} HELO=${REMOTE_CLIENT.name}`)).code).toBe(220);
      const r = await c.send({ from: mail.from, to: [mail.to], data: mail.data });
      expect(r.final?.code).toBe(550);
      expect(r.final?.text).toMatch(/5\.7\.1 Rejected by DMARC policy/);
    } finally {
      await c.quit();
    }
  });

  it('gives the client 550 5.6.0 for a message with thousands of forged fields to remove, which would cost Postfix a header pass each', async () => {
    const mail = testMail({ from: 'bob@remote.test', subject: 'many forged fields' });
    const c = await TestClient.connect(e2e.ports[25]);
    try {
      await c.cmd('EHLO relay.e2e.postseal.test');
      expect((await c.cmd(`XCLIENT ADDR=${REMOTE_CLIENT.addr} NAME=${REMOTE_CLIENT.name} HELO=${REMOTE_CLIENT.name}`)).code).toBe(220);
      // Removed one by one, 16,000 of these kept Postfix's cleanup busy for over 20 s.
      const r = await c.send({ from: mail.from, to: [mail.to], data: `${'X-Postseal-Alert: forged\r\n'.repeat(16000)}${mail.data}` });
      expect(r.final?.code).toBe(550);
      expect(r.final?.text).toMatch(/^5\.6\.0 Message header malformed: too many fields to remove or rewrite/);
    } finally {
      await c.quit();
    }
    expect(e2e.postfix.copies(mail.messageId)).toHaveLength(0);
  });

  it('with postseal stopped, Postfix answers 4xx (milter_default_action = tempfail) and keeps nothing', async () => {
    await e2e.postseal.stop();
    const mail = testMail({ from: 'alice@example.org', subject: 'postseal down' });
    const c = await TestClient.connect(e2e.ports[587]);
    try {
      const r = await c.send({ from: mail.from, to: [mail.to], data: mail.data });
      const failed = [r.mail, ...r.rcpts, r.data, r.final].find((x) => x && x.code >= 400);
      expect(failed?.code).toBeGreaterThanOrEqual(400);
      expect(failed?.code).toBeLessThan(500);
    } finally {
      await c.quit();
    }
    expect(e2e.postfix.copies(mail.messageId)).toHaveLength(0);
  });
});
