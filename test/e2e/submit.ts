/**
 * Mail into the e2e Postfix over SMTP, as a client on the Internet or one of our users would
 * send it. Each message carries a unique Message-ID, by which its delivered copies are counted.
 */
import { randomBytes } from 'node:crypto';
import { TestClient } from '../helpers/smtp-client';
import { MAIL_DOMAIN } from './postfix';

/** A client on the Internet (TEST-NET-2): neither in mynetworks nor authenticated. */
export const REMOTE_CLIENT = { addr: '198.51.100.7', name: 'mx.remote.test' };

export interface TestMail {
  from: string;
  to: string;
  messageId: string;
  data: string;
}

/** A message to user@example.test; `bodyBytes` pads the body with 78-octet lines. */
export function testMail(opts: { from: string; subject: string; bodyBytes?: number }): TestMail {
  const messageId = `${opts.subject.replace(/\W+/g, '-')}.${randomBytes(6).toString('hex')}@e2e.postseal.test`;
  const to = `user@${MAIL_DOMAIN}`;
  const line = `${'x'.repeat(76)}\r\n`;
  const body = opts.bodyBytes ? line.repeat(Math.ceil(opts.bodyBytes / line.length)) : 'hello\r\n';
  const header = [`From: <${opts.from}>`, `To: <${to}>`, `Subject: ${opts.subject}`, `Message-ID: <${messageId}>`, `Date: ${new Date().toUTCString()}`];
  return { from: opts.from, to, messageId, data: `${header.join('\r\n')}\r\n\r\n${body}` };
}

/**
 * Sends `mail` to 127.0.0.1:port and returns Postfix's queue id. With `xclient`, the session
 * first claims another client (XCLIENT, which the e2e Postfix allows from loopback on the MX
 * port), so Postfix treats it as that remote host.
 */
export async function submit(port: number, mail: TestMail, xclient?: { addr: string; name: string }): Promise<string> {
  const c = await TestClient.connect(port);
  try {
    if (xclient) {
      await c.cmd('EHLO relay.e2e.postseal.test');
      const r = await c.cmd(`XCLIENT ADDR=${xclient.addr} NAME=${xclient.name} HELO=${xclient.name}`);
      if (r.code !== 220) throw new Error(`XCLIENT refused: ${r.raw}`);
    }
    const r = await c.send({ from: mail.from, to: [mail.to], data: mail.data });
    const queued = r.final?.code === 250 ? /queued as (\S+)/.exec(r.final.text) : null;
    if (!queued) throw new Error(`Postfix did not queue the message: ${JSON.stringify(r)}`);
    return queued[1];
  } finally {
    await c.quit();
  }
}
