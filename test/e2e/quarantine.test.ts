/**
 * The quarantine through a real Postfix: mail failing DMARC of a p=quarantine domain, with the
 * default bank's dmarc.onQuarantine: quarantine, is held by postseal (Postfix hears 250 and
 * is done with it); `postseal quarantine list` shows it, `release` hands it to Postfix's
 * reinjection smtpd, and it is delivered exactly once, not filtered again, with its original
 * envelope: the success DSN that the final delivery writes names the ORCPT and the ENVID the
 * sender gave.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import { TestClient } from '../helpers/smtp-client';
import { startE2E, type E2E } from './environment';
import { MAIL_DOMAIN } from './postfix';
import { REMOTE_CLIENT } from './submit';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '../..');

// b.test publishes p=quarantine and an SPF record the sending client fails.
const zone = {
  'b.test': { TXT: ['v=spf1 -all'] },
  '_dmarc.b.test': { TXT: ['v=DMARC1; p=quarantine'] },
};

describe('the quarantine through a real Postfix', () => {
  let e2e: E2E;
  beforeAll(async () => {
    e2e = await startE2E(zone, {}, { banks: { default: { dmarc: { onReject: 'reject', onQuarantine: 'quarantine', onTempError: 'tempfail' } } } });
  }, 120_000);
  afterAll(async () => {
    await e2e?.close();
  }, 60_000);

  /** The built command, on the daemon's own configuration. */
  async function quarantine(...args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
    const cli = path.join(e2e.postfix.dir, 'dist', 'cli', 'main.js');
    const configFile = path.join(e2e.postfix.dir, 'postseal', 'postseal.yaml');
    try {
      const r = await run(process.execPath, [cli, 'quarantine', ...args, '--config', configFile], {
        encoding: 'utf8',
        timeout: 30000,
        env: { ...process.env, NODE_PATH: path.join(ROOT, 'node_modules') },
      });
      return { status: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { status: e.code, stdout: e.stdout, stderr: e.stderr };
    }
  }

  /** From the Internet on the MX port: header From b.test (DMARC fails), envelope sender ours so the DSN lands here. */
  async function send(): Promise<{ messageId: string; queueId: string }> {
    const messageId = `quarantine.${randomBytes(6).toString('hex')}@e2e.postseal.test`;
    const c = await TestClient.connect(e2e.ports[25]);
    try {
      await c.cmd('EHLO relay.e2e.postseal.test');
      expect((await c.cmd(`XCLIENT ADDR=${REMOTE_CLIENT.addr} NAME=${REMOTE_CLIENT.name} HELO=${REMOTE_CLIENT.name}`)).code).toBe(220);
      await c.cmd('EHLO relay.e2e.postseal.test');
      expect((await c.cmd(`MAIL FROM:<sender@${MAIL_DOMAIN}> RET=HDRS ENVID=q+2Benv+3D7`)).code).toBe(250);
      expect((await c.cmd(`RCPT TO:<user@${MAIL_DOMAIN}> NOTIFY=SUCCESS,FAILURE`)).code).toBe(250);
      expect((await c.cmd('DATA')).code).toBe(354);
      const header = ['From: <bob@b.test>', `To: <user@${MAIL_DOMAIN}>`, 'Subject: held for DMARC', `Message-ID: <${messageId}>`, `Date: ${new Date().toUTCString()}`];
      const final = await c.cmd(`${header.join('\r\n')}\r\n\r\nhello\r\n.`);
      const queued = /queued as (\S+)/.exec(final.text);
      if (final.code !== 250 || !queued) throw new Error(`not queued: ${final.raw}`);
      return { messageId, queueId: queued[1] };
    } finally {
      await c.quit();
    }
  }

  it('holds a p=quarantine failure, lists it, and delivers it exactly once on release with its original envelope', async () => {
    const { messageId, queueId } = await send();
    const line = await e2e.postseal.message(queueId);
    expect(line).toMatchObject({ bank: 'default', verdict: 'quarantine', reason: 'DMARC_FAIL_QUARANTINE', reply: expect.stringMatching(/^2\.7\.0 Ok, held in quarantine as /) });
    const id = line.quarantineId as string;
    // Postfix is done with it (status=sent to the filter), and nothing was delivered.
    expect(await e2e.postfix.queue()).toEqual([]);
    expect(e2e.postfix.copies(messageId)).toEqual([]);

    const listed = await quarantine('list', '--json', '--reason', 'dmarc');
    expect(listed.status).toBe(0);
    expect(JSON.parse(listed.stdout)).toEqual([
      expect.objectContaining({
        id,
        queueId,
        envelope: expect.objectContaining({ mailFrom: `sender@${MAIL_DOMAIN}`, ret: 'HDRS', envid: 'q+2Benv+3D7' }),
      }),
    ]);
    // The ORCPT Postfix added, kept as Postfix wrote it.
    expect(JSON.parse(listed.stdout)[0].envelope.recipients).toEqual([{ address: `user@${MAIL_DOMAIN}`, notify: 'SUCCESS,FAILURE', orcpt: `rfc822;user@${MAIL_DOMAIN}` }]);

    const released = await quarantine('release', id, '--json');
    expect(released.status).toBe(0);
    expect(JSON.parse(released.stdout)).toMatchObject({ ok: true, accepted: [`user@${MAIL_DOMAIN}`] });
    const copies = await e2e.postfix.delivered(messageId, () => e2e.explain());
    expect(copies).toHaveLength(1);
    // Not filtered again: the reinjection smtpd has no content_filter, so no A-R of ours and no second pass.
    expect(copies[0]).not.toMatch(/^Authentication-Results: filter\.postseal\.test/m);
    expect(e2e.postseal.logs.filter((l) => l.msg === 'message')).toHaveLength(1);
    // The final delivery's success DSN carries the original ORCPT and ENVID.
    const dsn = e2e.postfix.mailbox().find((m) => m.includes(messageId) && /^Original-Envelope-Id:/m.test(m));
    expect(dsn).toMatch(/^Original-Envelope-Id: q(\+2B|\+)env(\+3D|=)7/m);
    expect(dsn).toMatch(new RegExp(`^Original-Recipient: rfc822;\\s*user@${MAIL_DOMAIN.replace('.', '\\.')}`, 'im'));

    // A second release is refused: the mail is delivered once.
    expect((await quarantine('release', id)).status).toBe(3);
    expect(e2e.postfix.copies(messageId)).toHaveLength(1);
  });
});
