/**
 * Quarantine, notices and DSNs of the content checks through a real Postfix, with a real
 * clamd and spamd, and postseal signing what it sends to the notify target (Postfix's 10027
 * reinjection smtpd, which comes after postseal's signing) with a key for notify.from's
 * domain, published in the loopback DNS:
 *
 * - inbound EICAR (default bank, virus destiny quarantine): held, the virus admin's notice is
 *   delivered and DKIM-valid (Mail::DKIM, dkimpy), `quarantine list` shows it, `release`
 *   delivers it exactly once with its original envelope, not filtered again;
 * - outbound EICAR from our own user (ORIGINATING, destiny bounce, fakeSenderNames []): the DSN
 *   reaches the sender, a valid multipart/report, DKIM-valid; from the null sender: no DSN;
 * - a banned attachment from the Internet (banned destiny bounce): the DSN reaches the sender;
 * - GTUBE (spam destiny bounce, score over dsnCutoffLevel): discarded, no DSN;
 * - the notify target down (a bank chosen by sender whose notify port has no listener): the
 *   message is held but tempfailed (451), stays in Postfix's queue; once the target answers
 *   and Postfix retries, it is not held twice and the admin gets exactly one notice.
 */
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { pipeline } from 'node:stream';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { EICAR, messageWithAttachment, startClamd, zipOf, type ClamdServer } from '../helpers/clamd';
import { dkimpy, mailDkim, rsaKey, writeSigningFiles, zoneFor } from '../helpers/dkim-verifiers';
import { startDnsServer, type DnsServer } from '../helpers/dns-server';
import { GTUBE, startSpamd, type Spamd } from '../helpers/spamd';
import { startE2E, type E2E } from './environment';
import { MAIL_DOMAIN } from './postfix';
import { REMOTE_CLIENT, submit, testMail, type TestMail } from './submit';
import { waitFor } from './wait';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '../..');
const shipped = (name: string) => YAML.parse(readFileSync(path.join(ROOT, 'policy-banks', `${name}.yaml`), 'utf8'));
const ADMIN = `virus-admin@${MAIL_DOMAIN}`;
const SENDER = `sender@${MAIL_DOMAIN}`;
const DOWN_SENDER = `down@${MAIL_DOMAIN}`;

/** An mbox entry as the message bytes that were delivered: no "From " line, CRLF line ends. */
const messageOf = (mboxEntry: string) => Buffer.from(mboxEntry.slice(mboxEntry.indexOf('\n') + 1).replace(/\r?\n/g, '\r\n'), 'latin1');

describe('quarantine, notices and DSNs of the content checks through a real Postfix', () => {
  let clamd: ClamdServer;
  let spamd: Spamd;
  let dns: DnsServer;
  let e2e: E2E;
  let proxy: net.Server | undefined;
  beforeAll(async () => {
    [clamd, spamd] = await Promise.all([startClamd(), startSpamd()]);
    // SPF passes for the Internet sender, so its banned-attachment bounce may get a DSN: an
    // unauthenticated sender gets none (no backscatter, test/notify/bounce.test.ts).
    const zone = { ...zoneFor([rsaKey]), [MAIL_DOMAIN]: { TXT: [`v=spf1 ip4:${REMOTE_CLIENT.addr} -all`] } };
    dns = await startDnsServer(zone);
    const def = shipped('default');
    const orig = shipped('ORIGINATING');
    const notices = { virusAdmin: [ADMIN] };
    e2e = await startE2E(
      structuredClone(zone),
      {
        dkimSign: writeSigningFiles([rsaKey], [{ author: 'example.com', keys: ['example-rsa'] }]),
        notify: { from: 'postmaster@example.com' },
        bankRules: { senders: [{ senders: [DOWN_SENDER], bank: 'NOTIFYDOWN', listenerBanks: ['ORIGINATING'] }] },
      },
      {
        banks: {
          default: {
            stages: [...def.stages, 'banned', 'virus', 'spam', 'spam-tag'],
            // Names only: the default rules also deny by detected type, and EICAR is a DOS program.
            banned: { destiny: 'bounce', rules: [{ deny: '.\\.exe$', on: 'name' }] },
            virus: { socket: clamd.socket, destiny: 'quarantine' },
            spam: { spamd: { enabled: true, socket: spamd.socket, timeoutMs: 20000 }, destiny: 'bounce' },
            notices,
          },
          ORIGINATING: { stages: [...orig.stages, 'virus'], virus: { socket: clamd.socket, destiny: 'bounce', fakeSenderNames: [] } },
          // Nothing listens on the policy service's port (off here): the notify target is down until the test starts a relay there.
          NOTIFYDOWN: { ...orig, notify: { port: 10040 }, stages: [...orig.stages, 'virus'], virus: { socket: clamd.socket, destiny: 'quarantine' }, notices },
        },
      },
    );
  }, 120_000);
  afterAll(async () => {
    await new Promise((r) => (proxy ? proxy.close(r) : r(undefined)));
    await e2e?.close();
    await Promise.all([clamd?.stop(), spamd?.stop(), dns?.close()]);
  }, 60_000);

  const explain = () => `${e2e.explain()}\n--- clamd log ---\n${clamd.log()}`;

  function infected(from: string, subject: string): TestMail {
    const base = testMail({ from, subject });
    return {
      ...base,
      data: messageWithAttachment({ filename: 'invoice.zip', attachment: zipOf({ 'invoice.pdf.com': EICAR }), subject, messageId: base.messageId, from, to: base.to }),
    };
  }

  const notices = (messageId: string) => e2e.postfix.mailbox().filter((m) => /^X-Postseal-Notice: admin/m.test(m) && m.includes(`<${messageId}>`));

  async function quarantineCli(...args: string[]): Promise<{ status: number; stdout: string }> {
    const cli = path.join(e2e.postfix.dir, 'dist', 'cli', 'main.js');
    const configFile = path.join(e2e.postfix.dir, 'postseal', 'postseal.yaml');
    try {
      const r = await run(process.execPath, [cli, 'quarantine', ...args, '--config', configFile], {
        timeout: 30000,
        env: { ...process.env, NODE_PATH: path.join(ROOT, 'node_modules') },
      });
      return { status: 0, stdout: r.stdout };
    } catch (err) {
      const e = err as { code: number; stdout: string };
      return { status: e.code, stdout: e.stdout };
    }
  }

  it('holds inbound EICAR, tells the virus admin with a DKIM-valid notice, and delivers it exactly once with its envelope on release', async () => {
    const mail = infected(SENDER, 'eicar held');
    const queueId = await submit(e2e.ports[25], mail, REMOTE_CLIENT);
    const line = await e2e.postseal.message(queueId);
    expect(line).toMatchObject({ bank: 'default', verdict: 'quarantine', reason: 'VIRUS_FOUND', reply: expect.stringMatching(/^2\.7\.0 Ok, held in quarantine as /) });
    const id = line.quarantineId as string;
    const notice = await waitFor('the admin notice', () => notices(mail.messageId)[0], { explain });
    expect(notice).toMatch(/^Return-Path: <postmaster@example\.com>\r?$/m);
    expect(notice).toContain(`Quarantine id:  ${id}`);
    expect(notice).toContain(`Postfix queue id:    ${queueId}`);
    const [perl, py] = await Promise.all([mailDkim(messageOf(notice), dns.server), dkimpy(messageOf(notice), dns.server)]);
    expect(perl.map((r) => `${r.domain} ${r.result}`)).toEqual(['example.com pass']);
    expect(py.map((r) => `${r.domain} ${r.result}`)).toEqual(['example.com pass']);
    expect(await waitFor('the notice log line', () => e2e.postseal.logs.find((l) => l.msg === 'admin notice sent' && l.queueId === queueId), { explain })).toMatchObject({
      session: line.session,
      dkim: 'signed',
      to: [ADMIN],
    });
    expect(e2e.postfix.copies(mail.messageId)).toHaveLength(0);

    const listed = await quarantineCli('list', '--json', '--reason', 'VIRUS_FOUND');
    expect(JSON.parse(listed.stdout)).toEqual([expect.objectContaining({ id, queueId, envelope: expect.objectContaining({ mailFrom: SENDER }) })]);
    const released = await quarantineCli('release', id, '--json');
    expect(JSON.parse(released.stdout)).toMatchObject({ ok: true, accepted: [`user@${MAIL_DOMAIN}`] });
    const copies = await e2e.postfix.delivered(mail.messageId, explain);
    expect(copies).toHaveLength(1);
    expect(copies[0]).toMatch(new RegExp(`^Return-Path: <${SENDER}>\\r?$`, 'm'));
    expect(copies[0]).toMatch(new RegExp(`^X-Original-To: user@${MAIL_DOMAIN}\\r?$`, 'm'));
    expect(e2e.postseal.logs.filter((l) => l.msg === 'message' && l.queueId === queueId)).toHaveLength(1);
    expect((await quarantineCli('release', id)).status).toBe(3);
    expect(e2e.postfix.copies(mail.messageId)).toHaveLength(1);
  }, 90_000);

  /** The delivered DSN about `messageId`, read by Python's email package. */
  async function deliveredDsn(messageId: string): Promise<{ bytes: Buffer; parsed: { status: Record<string, string>[]; headers: string } & Record<string, unknown> }> {
    const dsn = await waitFor('the DSN', () => e2e.postfix.mailbox().find((m) => /^Return-Path: <>\r?$/m.test(m) && m.includes(`<${messageId}>`)), { explain });
    const bytes = messageOf(dsn);
    const parsed = JSON.parse(
      execFileSync(
        '/usr/bin/python3',
        [
          '-c',
          'import email,json,sys\nm=email.message_from_bytes(sys.stdin.buffer.read())\np=m.get_payload()\nprint(json.dumps({"type":m.get_content_type(),"from":m["from"],"defects":[str(d) for d in m.defects],"parts":[x.get_content_type() for x in p],"status":[dict(b.items()) for b in p[1].get_payload()],"headers":p[2].get_payload()}))',
        ],
        { input: bytes },
      ).toString(),
    );
    return { bytes, parsed };
  }

  it('bounces a banned attachment from the Internet with a valid DSN that reaches the sender', async () => {
    const base = testMail({ from: SENDER, subject: 'banned exe' });
    const mail = {
      ...base,
      data: messageWithAttachment({
        filename: 'setup.exe',
        attachment: Buffer.from('not really a program\n'),
        subject: 'banned exe',
        messageId: base.messageId,
        from: SENDER,
        to: base.to,
      }),
    };
    const queueId = await submit(e2e.ports[25], mail, REMOTE_CLIENT);
    expect(await e2e.postseal.message(queueId)).toMatchObject({
      bank: 'default',
      verdict: 'bounce',
      reason: 'BANNED_FILE',
      reply: '2.7.0 Ok, rejected by policy, delivery status notification sent',
    });
    const { bytes, parsed } = await deliveredDsn(mail.messageId);
    expect(parsed).toMatchObject({
      type: 'multipart/report',
      from: 'Mail Delivery System <MAILER-DAEMON@example.com>',
      defects: [],
      parts: ['text/plain', 'message/delivery-status', 'text/rfc822-headers'],
    });
    expect(parsed.status[1]).toMatchObject({ 'Final-Recipient': `rfc822; user@${MAIL_DOMAIN}`, Action: 'failed', Status: '5.7.0' });
    expect(parsed.headers).toContain('Subject: banned exe');
    expect(parsed.headers).not.toContain('not really a program');
    const py = await dkimpy(bytes, dns.server);
    expect(py.map((r) => `${r.domain} ${r.result}`)).toEqual(['example.com pass']);
    expect(e2e.postfix.copies(mail.messageId)).toHaveLength(0);
  }, 60_000);

  it("bounces our user's outbound EICAR with a DKIM-valid DSN that reaches the sender, and sends none to the null sender", async () => {
    const mail = infected(SENDER, 'eicar bounced');
    const queueId = await submit(e2e.ports[587], mail);
    expect(await e2e.postseal.message(queueId)).toMatchObject({ bank: 'ORIGINATING', verdict: 'bounce', reply: '2.7.0 Ok, rejected by policy, delivery status notification sent' });
    const { bytes, parsed } = await deliveredDsn(mail.messageId);
    expect(parsed).toMatchObject({
      type: 'multipart/report',
      from: 'Mail Delivery System <MAILER-DAEMON@example.com>',
      defects: [],
      parts: ['text/plain', 'message/delivery-status', 'text/rfc822-headers'],
    });
    expect(parsed.status[1]).toMatchObject({ 'Final-Recipient': `rfc822; user@${MAIL_DOMAIN}`, Action: 'failed', Status: '5.7.0' });
    expect(parsed.headers).toContain('Subject: eicar bounced');
    expect(parsed.headers).not.toContain('EICAR');
    const [perl, py] = await Promise.all([mailDkim(bytes, dns.server), dkimpy(bytes, dns.server)]);
    expect(perl.map((r) => `${r.domain} ${r.result}`)).toEqual(['example.com pass']);
    expect(py.map((r) => `${r.domain} ${r.result}`)).toEqual(['example.com pass']);
    expect(e2e.postfix.copies(mail.messageId)).toHaveLength(0);

    const fromNull = infected('', 'eicar from the null sender');
    const nullQueueId = await submit(e2e.ports[587], fromNull);
    expect(await e2e.postseal.message(nullQueueId)).toMatchObject({ verdict: 'bounce', reply: '2.7.0 Ok, rejected by policy, no notification (the null sender)' });
    // The bank inherits default.yaml's notices: the admin hears what happened, the null sender nothing.
    const told = await waitFor('the admin notice of the null-sender message', () => notices(fromNull.messageId)[0], { explain });
    expect(told).toContain('What was done:  not delivered (bounce): rejected by policy, no notification (the null sender)');
    expect(e2e.postfix.mailbox().filter((m) => /^Return-Path: <>\r?$/m.test(m) && m.includes(`<${fromNull.messageId}>`))).toHaveLength(0);
  }, 90_000);

  it('discards GTUBE over dsnCutoffLevel instead of bouncing it: no DSN reaches the sender', async () => {
    const mail = testMail({ from: SENDER, subject: 'gtube' });
    mail.data = mail.data.replace('hello\r\n', `${GTUBE}\r\n`);
    const queueId = await submit(e2e.ports[25], mail, REMOTE_CLIENT);
    expect(await e2e.postseal.message(queueId)).toMatchObject({ verdict: 'discard', reason: 'SPAM_KILL', reply: '2.7.0 Ok, discarded by policy' });
    await waitFor(`${queueId} done`, async () => (await e2e.postfix.queue()).length === 0, { explain });
    expect(e2e.postfix.mailbox().filter((m) => m.includes(`<${mail.messageId}>`))).toHaveLength(0);
  }, 60_000);

  it('tempfails while the notify target is down, holds the message once, and sends one notice after Postfix retries', async () => {
    const mail = infected(DOWN_SENDER, 'eicar notify down');
    const queueId = await submit(e2e.ports[587], mail);
    const entry = await e2e.postfix.deferred(queueId, explain);
    expect(entry.recipients[0].delay_reason).toMatch(/said: 451 4\.3\.0 /);
    const held = await waitFor('the hold of the first try', () => e2e.postseal.logs.find((l) => l.msg === 'message held in quarantine' && l.queueId === queueId), { explain });
    expect(held).toMatchObject({ bank: 'NOTIFYDOWN', quarantineId: expect.any(String) });
    await waitFor(
      'the notify failure log line',
      () => e2e.postseal.logs.some((l) => l.queueId === queueId && String(l.msg).startsWith('cannot send a notice through the notify target')),
      {
        explain,
      },
    );

    // The target comes back: a relay on the notify port to Postfix's 10027.
    proxy = net.createServer((client) => {
      const up = net.connect(e2e.ports[10027], '127.0.0.1');
      pipeline(client, up, () => client.destroy());
      pipeline(up, client, () => up.destroy());
    });
    await new Promise<void>((r) => proxy!.listen(e2e.ports[10040], '127.0.0.1', r));
    await e2e.postfix.flush();
    await waitFor('the admin notice after the retry', async () => (await e2e.postfix.queue()).length === 0 && notices(mail.messageId).length > 0, { explain });
    await e2e.postfix.flush();
    expect(notices(mail.messageId)).toHaveLength(1);
    // postseal writes its log in blocks: the retry's line may come after Postfix heard the reply.
    const retries = await waitFor(
      'the log line of the retry',
      () => {
        const found = e2e.postseal.logs.filter((l) => l.queueId === queueId && String(l.msg).startsWith('a retry of a message settled before'));
        return found.length > 0 && found;
      },
      { explain },
    );
    expect(retries.map((l) => l.quarantineId)).toEqual([held.quarantineId]);
    const listed = JSON.parse((await quarantineCli('list', '--json')).stdout) as { queueId: string }[];
    expect(listed.filter((q) => q.queueId === queueId)).toHaveLength(1);
    expect(e2e.postfix.copies(mail.messageId)).toHaveLength(0);
  }, 90_000);
});
