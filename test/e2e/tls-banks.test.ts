/**
 * Through a real Postfix: postseal reinjects over STARTTLS into a reinjection smtpd with
 * smtpd_tls_security_level = encrypt (certificate made by the test with openssl; Postfix's
 * own log shows the TLS connection), and the bank rules change the treatment: a client
 * network bank signs mail the port's bank would not, a sender bank leaves unsigned mail the
 * port's bank would sign.
 */
import { chmodSync } from 'node:fs';
import { startDnsServer, type DnsServer } from '../helpers/dns-server';
import { rsaKey, writeSigningFiles, zoneFor, type TestKey } from '../helpers/dkim-verifiers';
import { TestClient } from '../helpers/smtp-client';
import { makeCertificates } from '../helpers/tls-cert';
import { startE2E, type E2E } from './environment';
import { submit, testMail } from './submit';
import { waitFor } from './wait';

const keys: TestKey[] = [{ ...rsaKey, domain: 'example.org' }];
const PARTNER = { addr: '198.51.100.7', name: 'mx.partner.test' };
const STRANGER = { addr: '203.0.113.5', name: 'mx.stranger.test' };
const ORIGINATING_STAGES = ['loop-guard', 'header-sanity', 'authentication-results', 'seven-bit', 'dkim-sign'];

describe('TLS to the reinjection smtpd and banks by client network and sender, through a real Postfix', () => {
  let e2e: E2E;
  let dns: DnsServer;
  beforeAll(async () => {
    const certs = makeCertificates();
    // Postfix's smtpd (user postfix) reads them: mkdtemp made the folder 0700.
    chmodSync(certs.dir, 0o755);
    for (const f of [certs.certFile, certs.keyFile]) chmodSync(f, 0o644);
    const zone = zoneFor(keys);
    dns = await startDnsServer(zone);
    const tls = { mode: 'encrypt', caFile: certs.caFile, verifyName: 'localhost' };
    e2e = await startE2E(
      structuredClone(zone),
      {
        dkimSign: writeSigningFiles(keys, [{ author: 'example.org', keys: ['example-rsa'] }]),
        bankRules: {
          clientNetworks: [{ networks: ['198.51.100.0/24'], bank: 'PARTNER', listenerBanks: ['default'] }],
          senders: [{ senders: ['bulk@example.org'], bank: 'UNSIGNED', listenerBanks: ['ORIGINATING'] }],
        },
      },
      {
        banks: {
          default: { forward: { port: 10025, tls } },
          // 10027 is plain: may stays plain where STARTTLS is not announced. (Banks are overlays
          // on default: a bank that forwards elsewhere must say so for tls too.)
          ORIGINATING: { forward: { port: 10027, tls: { mode: 'may' } } },
          PARTNER: { description: 'a partner MX whose mail we sign', originating: true, stages: ORIGINATING_STAGES, forward: { port: 10025 } },
          UNSIGNED: {
            description: 'bulk mail, not signed',
            originating: true,
            stages: ORIGINATING_STAGES.filter((s) => s !== 'dkim-sign'),
            forward: { port: 10027, tls: { mode: 'may' } },
          },
        },
        beforePostseal: async (postfix, ports) => {
          await postfix.setServiceParameters(10025, {
            smtpd_tls_security_level: 'encrypt',
            smtpd_tls_cert_file: certs.certFile,
            smtpd_tls_key_file: certs.keyFile,
            smtpd_tls_loglevel: '1',
          });
          await waitFor('the reinjection smtpd to announce STARTTLS', async () => {
            const c = await TestClient.connect(ports[10025]);
            const ehlo = await c.cmd('EHLO probe.test');
            await c.quit();
            return /STARTTLS/.test(ehlo.raw);
          });
        },
      },
    );
  }, 120_000);
  afterAll(async () => {
    await e2e?.close();
    await dns?.close();
  }, 60_000);

  const messageLine = (queueId: string) => waitFor(`postseal's log line for ${queueId}`, async () => e2e.postseal.logs.find((l) => l.msg === 'message' && l.queueId === queueId));

  it('mail from a client in a listed network goes to its bank and is signed; reinjection is over TLS, as Postfix logs', async () => {
    const mail = testMail({ from: 'alice@example.org', subject: 'partner network' });
    const queueId = await submit(e2e.ports[25], mail, PARTNER);
    const copies = await e2e.postfix.delivered(mail.messageId, () => e2e.explain());
    expect(copies).toHaveLength(1);
    expect(copies[0]).toMatch(/^DKIM-Signature:[\s\S]*?\bd=example\.org;/m);
    expect(await messageLine(queueId)).toMatchObject({ bank: 'PARTNER', bankRule: 'clientNetworks[0] 198.51.100.0/24', downstreamTls: 'TLSv1.3' });
    expect(e2e.postfix.maillog()).toMatch(/postfix\/reinject\/smtpd\[\d+\]: \S+ TLS connection established from localhost\[127\.0\.0\.1\]: TLSv1\.3 with cipher/);
  });

  it('mail from another client stays on the port bank: not signed, and still reinjected over TLS', async () => {
    const mail = testMail({ from: 'alice@example.org', subject: 'stranger' });
    const queueId = await submit(e2e.ports[25], mail, STRANGER);
    const copies = await e2e.postfix.delivered(mail.messageId, () => e2e.explain());
    expect(copies).toHaveLength(1);
    expect(copies[0]).not.toMatch(/^DKIM-Signature:/m);
    expect(await messageLine(queueId)).toMatchObject({ bank: 'default', downstreamTls: 'TLSv1.3' });
  });

  it('a listed sender on the submission port goes to its bank and is not signed, where other users are', async () => {
    const bulk = { ...testMail({ from: 'alice@example.org', subject: 'bulk sender' }), from: 'bulk@example.org' };
    const user = testMail({ from: 'alice@example.org', subject: 'user sender' });
    const bulkId = await submit(e2e.ports[587], bulk);
    const userId = await submit(e2e.ports[587], user);
    const [bulkCopies, userCopies] = [await e2e.postfix.delivered(bulk.messageId, () => e2e.explain()), await e2e.postfix.delivered(user.messageId, () => e2e.explain())];
    expect(bulkCopies[0]).not.toMatch(/^DKIM-Signature:/m);
    expect(userCopies[0]).toMatch(/^DKIM-Signature:[\s\S]*?\bd=example\.org;/m);
    expect(await messageLine(bulkId)).toMatchObject({ bank: 'UNSIGNED', bankRule: 'senders[0] bulk@example.org', downstreamTls: 'none' });
    expect(await messageLine(userId)).toMatchObject({ bank: 'ORIGINATING', downstreamTls: 'none' });
  });
});
