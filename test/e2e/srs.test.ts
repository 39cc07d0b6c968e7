/**
 * SRS through a real Postfix: the e2e instance gets the lines of examples/postfix/srs.main.cf
 * (ports remapped), postseal serves the maps (services.srs), a virtual alias forwards
 * fwd@example.test to an outside domain, and a transport sends outside.test and remote.test
 * to a loopback SMTP sink standing in for the rest of the world.
 * - forwarded mail leaves with an SRS0 envelope sender of example.test, which passes SPF at the
 *   next hop where the original sender would fail (postseal's SPF evaluator against a loopback
 *   DNS server for the outside world), and Mail::SRS reverses it;
 * - a bounce to that SRS0 address is reversed and delivered to the original sender;
 * - a quoted local part ("jo smith") makes an SRS0 sender quoted whole, whose bounce is reversed;
 *   one with "%" or "!" leaves as it is (our smtpd refuses the bounce to its SRS form: 454);
 * - a sender too long for an SRS key leaves unrewritten (a map PERM would defer it: 451 4.3.0);
 * - with only real mailboxes listed, a forged or expired SRS0 address is refused at RCPT (550
 *   5.1.1: smtpd knows an SRS address only through recipient_canonical_maps), a valid one not.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createDnsResolver } from '../../src/lib/dns';
import { checkSpf } from '../../src/lib/spf';
import { createSrsEngine } from '../../src/lib/srs/srs';
import { startDnsServer, type DnsServer } from '../helpers/dns-server';
import { TestClient } from '../helpers/smtp-client';
import { startSink, type Sink } from '../helpers/sink';
import { mailSrs } from '../helpers/srs-peers';
import { startE2E, type E2E } from './environment';
import { MAIL_DOMAIN, renderExample } from './postfix';
import { REMOTE_CLIENT } from './submit';
import { waitFor } from './wait';

const exec = promisify(execFile);
const SECRET = 'e2e-srs-secret-0123';
const ENGINE = { domain: MAIL_DOMAIN, secrets: [SECRET], hashLength: 4, hashMin: 4, maxAgeDays: 21, separator: '=' as const, localDomains: [], excludeDomains: [] };
const SRS_EXAMPLE = path.resolve(__dirname, '../../examples/postfix/srs.main.cf');

describe('SRS through a real Postfix', () => {
  let e2e: E2E;
  let sink: Sink;
  /** What the outside world's DNS says: our domain sends from this host (127.0.0.1), remote.test from its own MX only. */
  let worldDns: DnsServer;
  beforeAll(async () => {
    worldDns = await startDnsServer({
      [MAIL_DOMAIN]: { TXT: ['v=spf1 ip4:127.0.0.1 -all'] },
      'remote.test': { TXT: [`v=spf1 ip4:${REMOTE_CLIENT.addr} -all`] },
    });
    const secrets = mkdtempSync(path.join(tmpdir(), 'postseal-e2e-srs-'));
    writeFileSync(path.join(secrets, 'srs-secrets'), `${SECRET}\n`);
    chmodSync(path.join(secrets, 'srs-secrets'), 0o600);
    const srs = { enabled: true, domain: MAIL_DOMAIN, secretsFile: path.join(secrets, 'srs-secrets'), socketmapPort: 10003, tcpForwardPort: 10001, tcpReversePort: 10002 };
    e2e = await startE2E({}, { services: { srs } });
    sink = await startSink();
    // The example's settings, as a postmaster merges them (comment lines dropped).
    const lines = renderExample(readFileSync(SRS_EXAMPLE, 'utf8'), e2e.ports)
      .split('\n')
      .filter((l) => /^\w+ = /.test(l));
    expect(lines.length).toBe(4);
    const world = `smtp:[127.0.0.1]:${sink.port}`;
    await exec('/usr/sbin/postconf', [
      '-c',
      e2e.postfix.configDir,
      '-e',
      ...lines.map((l) => l.replace(' = ', '=')),
      `virtual_alias_maps=inline:{ fwd@${MAIL_DOMAIN}=friend@outside.test }`,
      `transport_maps=inline:{ outside.test=${world}, remote.test=${world} }`,
    ]);
    await e2e.postfix.reload();
  }, 120_000);
  afterAll(async () => {
    await e2e?.close();
    await sink?.close();
    await worldDns?.close();
  }, 60_000);

  async function send(from: string, to: string): Promise<{ messageId: string; reply: number }> {
    const messageId = `srs.${randomBytes(6).toString('hex')}@e2e.postseal.test`;
    const c = await TestClient.connect(e2e.ports[25]);
    try {
      await c.cmd('EHLO relay.e2e.postseal.test');
      expect((await c.cmd(`XCLIENT ADDR=${REMOTE_CLIENT.addr} NAME=${REMOTE_CLIENT.name} HELO=${REMOTE_CLIENT.name}`)).code).toBe(220);
      await c.cmd(`EHLO ${REMOTE_CLIENT.name}`);
      expect((await c.cmd(`MAIL FROM:<${from}>`)).code).toBe(250);
      const rcpt = await c.cmd(`RCPT TO:<${to}>`);
      if (rcpt.code !== 250) {
        return { messageId, reply: rcpt.code };
      }
      expect((await c.cmd('DATA')).code).toBe(354);
      const header = [`From: <${from || `MAILER-DAEMON@${REMOTE_CLIENT.name}`}>`, `To: <${to}>`, 'Subject: srs', `Message-ID: <${messageId}>`, `Date: ${new Date().toUTCString()}`];
      const final = await c.cmd(`${header.join('\r\n')}\r\n\r\nhello\r\n.`);
      return { messageId, reply: final.code };
    } finally {
      await c.quit();
    }
  }

  const inLog = (what: string, re: RegExp) => waitFor(what, () => re.exec(e2e.postfix.maillog())?.[1], { explain: () => e2e.explain() });

  const arrived = (messageId: string) =>
    waitFor(`${messageId} at the outside sink`, async () => sink.received.find((r) => r.data.toString('latin1').includes(messageId)), { explain: () => e2e.explain() });

  let srsSender = '';

  it('forwards mail for a local alias to an outside domain with an SRS0 sender of our domain', async () => {
    const { messageId, reply } = await send('alice@remote.test', `fwd@${MAIL_DOMAIN}`);
    expect(reply).toBe(250);
    const got = await arrived(messageId);
    expect(got.recipients.map((r) => r.address)).toEqual(['friend@outside.test']);
    srsSender = got.mailFrom;
    expect(srsSender).toMatch(/^SRS0=[A-Za-z0-9+/]{4}=[A-Z2-7]{2}=remote\.test=alice@example\.test$/);
    // At the next hop (the sink, reached from 127.0.0.1) the SRS sender passes SPF; the original would fail.
    const resolver = createDnsResolver({ servers: [worldDns.server], timeoutMs: 5000, retries: 0, cacheMaxEntries: 0, cacheMaxTtlSec: 0 });
    expect((await checkSpf({ ip: '127.0.0.1', sender: srsSender, helo: 'mail.example.test', resolver })).result).toBe('pass');
    expect((await checkSpf({ ip: '127.0.0.1', sender: 'alice@remote.test', helo: 'mail.example.test', resolver })).result).toBe('fail');
    // Made with our secret: Mail::SRS reverses it.
    expect(await mailSrs({ secrets: [SECRET] }, [`reverse ${srsSender}`])).toEqual(['OK alice@remote.test']);
  });

  it('delivers a bounce sent to that SRS0 address to the original sender', async () => {
    expect(srsSender).not.toBe('');
    const { messageId, reply } = await send('', srsSender);
    expect(reply).toBe(250);
    const got = await arrived(messageId);
    expect(got.mailFrom).toBe('');
    expect(got.recipients.map((r) => r.address)).toEqual(['alice@remote.test']);
  });

  it('forwards a sender whose local part is quoted with a whole quoted SRS0 sender, and reverses its bounce', async () => {
    // Postfix asks the maps in external form ("jo smith"@remote.test) and splits an answer with
    // a quote inside into several addresses ("multi-valued ... entry"): it must come back quoted
    // whole. The sink (smtp-server) refuses such addresses: Postfix's log tells what left, and where.
    const from = '"jo smith"@remote.test';
    expect((await send(from, `fwd@${MAIL_DOMAIN}`)).reply).toBe(250);
    const srs = await inLog(`the SRS sender of ${from}`, /from=<("SRS0=[^=]{4}=[A-Z2-7]{2}=remote\.test=jo smith"@example\.test)>/);
    expect((await send('', srs)).reply).toBe(250);
    await inLog(`the bounce to ${srs} going to ${from}`, new RegExp(`to=<(${escapeRe(from)})>, orig_to=<${escapeRe(srs)}>`));
  });

  it('leaves a sender with "%" or "!" in its local part alone: our smtpd would refuse its bounce as relaying', async () => {
    for (const from of ['a%b@remote.test', 'c!d@remote.test']) {
      const { messageId, reply } = await send(from, `fwd@${MAIL_DOMAIN}`);
      expect(reply).toBe(250);
      expect((await arrived(messageId)).mailFrom).toBe(from);
      // What an SRS address of it would meet on the way back (postsrsd makes one):
      const srs = createSrsEngine({ ...ENGINE, now: Date.now }).forward('x@remote.test');
      if (srs.kind !== 'rewritten') throw new Error('no SRS address made');
      expect((await send('', srs.address.replace('=x@', `=${from.split('@')[0]}@`))).reply).toBe(454);
    }
  });

  it('sends mail from a sender too long to rewrite (1.5 KB) on unrewritten, not deferred', async () => {
    // Postfix takes a PERM from a map as a lookup error and defers; a key over MAX_KEY_BYTES is
    // "not found". The sink refuses so long an address: Postfix's log tells what left.
    const from = `${'x'.repeat(1500)}@remote.test`;
    expect((await send(from, `fwd@${MAIL_DOMAIN}`)).reply).toBe(250);
    await waitFor(
      'a queue file of that sender delivered to friend@outside.test',
      () => {
        const log = e2e.postfix.maillog();
        const ids = [...log.matchAll(new RegExp(`qmgr\\[\\d+\\]: ([0-9A-F]+): from=<${from}>`, 'g'))].map((m) => m[1]);
        return ids.some((id) => log.includes(`${id}: to=<friend@outside.test>`));
      },
      { explain: () => e2e.explain() },
    );
  });

  it('refuses a forged and an expired SRS0 address at RCPT when only real mailboxes are listed, and accepts a valid one', async () => {
    // Realistic recipient checks: smtpd knows example.test's mailboxes, and an SRS address only
    // through recipient_canonical_maps, which asks postseal's reverse map.
    await exec('/usr/sbin/postconf', ['-c', e2e.postfix.configDir, '-e', `virtual_mailbox_maps=inline:{ bob@${MAIL_DOMAIN}=mailbox }`]);
    await e2e.postfix.reload();
    const forged = srsSender.replace('alice', 'mallory');
    // Signed with our secret 30 days ago: the hash verifies, the timestamp is past maxAgeDays.
    const expired = createSrsEngine({ ...ENGINE, now: () => Date.now() - 30 * 86_400_000 }).forward('alice@remote.test');
    if (expired.kind !== 'rewritten') throw new Error('no SRS address made');
    expect((await send('', forged)).reply).toBe(550);
    expect((await send('', expired.address)).reply).toBe(550);
    expect(e2e.postfix.maillog()).toMatch(/reject: RCPT .* 550 5\.1\.1 <SRS0=[^>]*mallory@example\.test>: Recipient address rejected/);
    const { messageId, reply } = await send('', srsSender);
    expect(reply).toBe(250);
    expect((await arrived(messageId)).recipients.map((r) => r.address)).toEqual(['alice@remote.test']);
  });
});

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
