/**
 * The virus stage behind a real Postfix, with a real clamd on its unix socket (as on Debian):
 * EICAR in a zip inside a multipart message is refused with 554 and Postfix bounces it to the
 * sender; with clamd stopped the mail is deferred (451) and stays in Postfix's queue, and is
 * delivered once after clamd is back and the queue is flushed.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { EICAR, EICAR_NAME, messageWithAttachment, startClamd, zipOf, type ClamdServer } from '../helpers/clamd';
import { startE2E, type E2E } from './environment';
import { MAIL_DOMAIN } from './postfix';
import { REMOTE_CLIENT, submit, testMail, type TestMail } from './submit';
import { waitFor } from './wait';

const LOVER = `lover@${MAIL_DOMAIN}`;
const shippedDefault = YAML.parse(readFileSync(path.join(__dirname, '../../policy-banks/default.yaml'), 'utf8'));

describe('the virus stage through a real Postfix', () => {
  let clamd: ClamdServer;
  let e2e: E2E;
  beforeAll(async () => {
    clamd = await startClamd();
    e2e = await startE2E({}, {}, { banks: { default: { stages: [...shippedDefault.stages, 'virus'], virus: { socket: clamd.socket, lovers: [LOVER] } } } });
  }, 120_000);
  afterAll(async () => {
    await e2e?.close();
    await clamd?.stop();
  }, 60_000);

  const explain = () => `${e2e.explain()}\n--- clamd log ---\n${clamd.log()}`;
  /** Postfix's maillog line that says it bounced queueId (with the downstream's reply). */
  const bounceOf = (queueId: string) =>
    waitFor(
      `the bounce of ${queueId}`,
      () =>
        e2e.postfix
          .maillog()
          .split('\n')
          .find((l) => l.includes(`${queueId}:`) && l.includes('status=bounced')),
      { explain },
    );

  /** Our own user as the sender, so that Postfix's bounce lands in the test mailbox. */
  function infectedMail(subject: string, to?: string): TestMail {
    const base = { ...testMail({ from: `sender@${MAIL_DOMAIN}`, subject }), ...(to ? { to } : {}) };
    const data = messageWithAttachment({
      filename: 'invoice.zip',
      attachment: zipOf({ 'invoice.pdf.com': EICAR }),
      subject,
      messageId: base.messageId,
      from: base.from,
      to: base.to,
    });
    return { ...base, data };
  }

  it('rejects EICAR in a zip inside a multipart message with 554 5.7.0, and Postfix bounces it to the sender', async () => {
    const mail = infectedMail('eicar in a zip');
    const queueId = await submit(e2e.ports[25], mail, REMOTE_CLIENT);
    const bounced = await bounceOf(queueId);
    expect(bounced).toContain(`said: 554 5.7.0 Message rejected: virus found (${EICAR_NAME}) (in reply to end of DATA command)`);
    expect(await e2e.postseal.message(queueId)).toMatchObject({ bank: 'default', verdict: 'reject', reason: 'VIRUS_FOUND' });
    expect(e2e.postfix.copies(mail.messageId)).toHaveLength(0);
    // The sender's notification names the reply. Postfix returns the original whole (virus included) below
    // its bounce_size_limit, and does not pass its own bounces through the content filter: docs/content-checks.md.
    const notice = await waitFor(
      'the non-delivery notification in the sender mailbox',
      () => e2e.postfix.mailbox().find((m) => /^Subject: Undelivered Mail Returned to Sender/m.test(m) && m.includes(mail.messageId)),
      { explain },
    );
    expect(notice).toContain('554 5.7.0 Message rejected: virus found');
  }, 60_000);

  it('delivers the same virus to a virus lover, tagged with X-Postseal-Alert and X-Virus-Scanned', async () => {
    const mail = infectedMail('eicar for a lover', LOVER);
    const queueId = await submit(e2e.ports[25], mail, REMOTE_CLIENT);
    const copies = await e2e.postfix.delivered(mail.messageId, explain);
    expect(copies).toHaveLength(1);
    expect(copies[0]).toMatch(new RegExp(`^X-Postseal-Alert: INFECTED, message contains virus: ${EICAR_NAME.replace(/\./g, '\\.')}\r?$`, 'm'));
    expect(copies[0]).toMatch(/^X-Virus-Scanned: postseal at filter\.postseal\.test\r?$/m);
    expect(await e2e.postseal.message(queueId)).toMatchObject({ verdict: 'tag', reason: 'VIRUS_FOUND_LOVED' });
  }, 60_000);

  it('refuses EICAR 25 MIME levels deep, which clamd given the whole message answers OK for (past its MaxRecursion)', async () => {
    const base = testMail({ from: `sender@${MAIL_DOMAIN}`, subject: 'eicar deep' });
    let body = `Content-Type: application/octet-stream; name="invoice.com"\r\nContent-Transfer-Encoding: base64\r\n\r\n${Buffer.from(EICAR).toString('base64')}`;
    for (let i = 25; i >= 1; i--) body = `Content-Type: multipart/mixed; boundary="b${i}"\r\n\r\n--b${i}\r\n${body}\r\n--b${i}--\r\n`;
    const mail = { ...base, data: `${base.data.split('\r\n\r\n')[0]}\r\nMIME-Version: 1.0\r\n${body}` };
    const queueId = await submit(e2e.ports[25], mail, REMOTE_CLIENT);
    const bounced = await bounceOf(queueId);
    expect(bounced).toContain(`said: 554 5.7.0 Message rejected: virus found (${EICAR_NAME} (scan 1 of 1, `);
    expect(e2e.postfix.copies(mail.messageId)).toHaveLength(0);
  }, 60_000);

  it('defers mail with 451 while clamd is down, keeps it queued, and delivers it once after clamd is back and the queue is flushed', async () => {
    const mail = testMail({ from: 'bob@remote.test', subject: 'clamd down' });
    await clamd.kill();
    let queueId: string;
    try {
      queueId = await submit(e2e.ports[25], mail, REMOTE_CLIENT);
      const entry = await e2e.postfix.deferred(queueId, explain);
      expect(entry.recipients[0].delay_reason).toMatch(/said: 451 4\.3\.0 Virus scan could not complete, try again later \(in reply to end of DATA command\)/);
      expect(await e2e.postseal.message(queueId)).toMatchObject({ verdict: 'tempfail', reason: 'VIRUS_SCANNER_FAILED' });
      expect(e2e.postfix.copies(mail.messageId)).toHaveLength(0);
    } finally {
      await clamd.restart();
    }
    await e2e.postfix.flush();
    const copies = await e2e.postfix.delivered(mail.messageId, explain);
    expect(copies).toHaveLength(1);
    expect(copies[0]).toMatch(/^X-Virus-Scanned: postseal at filter\.postseal\.test\r?$/m);
  }, 60_000);
});
