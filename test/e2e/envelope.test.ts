/**
 * Envelopes as real mail carries them, through Postfix -> postseal -> Postfix on both paths:
 * sub-addresses, a quoted local part, an IDN domain, "_" in a domain, ENVID with "+" and "=",
 * NOTIFY and the ORCPT Postfix adds for every recipient. Each recipient gets the message
 * exactly once, and the DSN parameters survive both hops (a success DSN names the original
 * recipient and envelope id). Before postseal passed these on as written, every one of these
 * recipients bounced with "501 5.5.4 Bad ORCPT parameter syntax" or "501 5.1.3".
 */
import { randomBytes } from 'node:crypto';
import { TestClient } from '../helpers/smtp-client';
import { startE2E, type E2E } from './environment';
import { MAIL_DOMAIN } from './postfix';
import { REMOTE_CLIENT } from './submit';

const RECIPIENTS = [`bob+tag@${MAIL_DOMAIN}`, `"john doe"@${MAIL_DOMAIN}`, 'user@xn--mnchen-3ya.test', 'a@my_host.example.test', `list+bounces=x@${MAIL_DOMAIN}`];

describe('envelopes through a real Postfix on both paths', () => {
  let e2e: E2E;
  beforeAll(async () => {
    e2e = await startE2E();
  }, 120_000);
  afterAll(async () => {
    await e2e?.close();
  }, 60_000);

  async function send(port: number, opts: { from: string; notify: string; xclient?: boolean }): Promise<{ messageId: string; queueId: string }> {
    const messageId = `envelope.${randomBytes(6).toString('hex')}@e2e.postseal.test`;
    const c = await TestClient.connect(port);
    try {
      await c.cmd('EHLO relay.e2e.postseal.test');
      if (opts.xclient) expect((await c.cmd(`XCLIENT ADDR=${REMOTE_CLIENT.addr} NAME=${REMOTE_CLIENT.name} HELO=${REMOTE_CLIENT.name}`)).code).toBe(220);
      if (opts.xclient) await c.cmd('EHLO relay.e2e.postseal.test');
      expect((await c.cmd(`MAIL FROM:<${opts.from}> RET=HDRS ENVID=env+2Bid+3D1`)).code).toBe(250);
      for (const to of RECIPIENTS) expect([to, (await c.cmd(`RCPT TO:<${to}> NOTIFY=${opts.notify}`)).code]).toEqual([to, 250]);
      expect((await c.cmd('DATA')).code).toBe(354);
      const header = [`From: <${opts.from}>`, `To: <bob+tag@${MAIL_DOMAIN}>`, 'Subject: envelopes', `Message-ID: <${messageId}>`, `Date: ${new Date().toUTCString()}`];
      const final = await c.cmd(`${header.join('\r\n')}\r\n\r\nhello\r\n.`);
      const queued = /queued as (\S+)/.exec(final.text);
      if (final.code !== 250 || !queued) throw new Error(`not queued: ${final.raw}`);
      return { messageId, queueId: queued[1] };
    } finally {
      await c.quit();
    }
  }

  /** Each recipient's copy once: virtual(8) names the recipient in Delivered-To. */
  function expectOncePerRecipient(copies: string[]): void {
    const deliveredTo = copies.map((m) => /^Delivered-To: (.*)$/m.exec(m)?.[1]?.trim());
    expect(deliveredTo.sort()).toEqual([...RECIPIENTS].sort());
  }

  it('delivers ORIGINATING mail to every recipient once, and a success DSN names the original recipient and envelope id', async () => {
    const { messageId, queueId } = await send(e2e.ports[587], { from: `sender+x@${MAIL_DOMAIN}`, notify: 'SUCCESS,FAILURE' });
    const copies = await e2e.postfix.delivered(messageId, () => e2e.explain());
    expectOncePerRecipient(copies);
    expect(await e2e.postseal.message(queueId)).toMatchObject({ bank: 'ORIGINATING', verdict: 'pass', rcpts: RECIPIENTS.length });
    // The success notices come from the final delivery, behind postseal: NOTIFY, ORCPT and ENVID crossed both hops.
    const dsns = e2e.postfix.mailbox().filter((m) => /^Original-Recipient: rfc822;\s*bob\+tag@example\.test/im.test(m));
    expect(dsns.length).toBeGreaterThanOrEqual(1);
    expect(dsns[0]).toMatch(/^Original-Envelope-Id: env(\+2B|\+)id(\+3D|=)1/m);
    expect(e2e.postfix.maillog()).not.toMatch(/Bad ORCPT|5\.1\.3|bounced/);
  });

  it('delivers inbound MX mail to every recipient once through the default bank', async () => {
    const { messageId, queueId } = await send(e2e.ports[25], { from: 'bob@remote.test', notify: 'FAILURE', xclient: true });
    const copies = await e2e.postfix.delivered(messageId, () => e2e.explain());
    expectOncePerRecipient(copies);
    expect(await e2e.postseal.message(queueId)).toMatchObject({ bank: 'default', verdict: 'pass', rcpts: RECIPIENTS.length });
  });
});
