/**
 * Banned files through a real Postfix (examples/postfix, the default bank with `banned` added):
 * MX mail with invoice.pdf.exe inside a zip is refused by postseal with 554 5.7.0, so Postfix
 * bounces it (the reason naming the kind, not the file), and a PDF goes through.
 */
import { file, makeZip, messageWith } from '../helpers/archives';
import { startE2E, type E2E } from './environment';
import { MAIL_DOMAIN } from './postfix';
import { REMOTE_CLIENT, submit, type TestMail } from './submit';
import { waitFor } from './wait';

const DEFAULT_STAGES = ['loop-guard', 'header-sanity', 'banned', 'dkim-verify', 'spf', 'dmarc', 'arc-verify', 'authentication-results'];

/** A mail from and to the local mailbox (the bounce of a refused one lands there too, and leaves the queue empty). */
function mailWith(subject: string, attachment: ReturnType<typeof file>): TestMail {
  const messageId = `${subject}.${Date.now()}@e2e.postseal.test`;
  const body = messageWith([attachment])
    .toString('latin1')
    .replace(/^Subject: files\r\n/m, `Subject: ${subject}\r\nMessage-ID: <${messageId}>\r\n`);
  return { from: `user@${MAIL_DOMAIN}`, to: `user@${MAIL_DOMAIN}`, messageId, data: body };
}

describe('banned files through a real Postfix', () => {
  let e2e: E2E;
  beforeAll(async () => {
    e2e = await startE2E({}, {}, { banks: { default: { stages: DEFAULT_STAGES } } });
  }, 120_000);
  afterAll(async () => {
    await e2e?.close();
  }, 60_000);

  it('delivers MX mail with a PDF attached', async () => {
    const mail = mailWith('pdf', file('report.pdf', '%PDF-1.7\n1 0 obj\n<<>>\nendobj\n', 'application/pdf'));
    const queueId = await submit(e2e.ports[25], mail, REMOTE_CLIENT);
    expect(await e2e.postfix.delivered(mail.messageId, () => e2e.explain())).toHaveLength(1);
    expect(await e2e.postseal.message(queueId)).toMatchObject({ bank: 'default', verdict: 'pass' });
  });

  it('refuses MX mail with invoice.pdf.exe in a zip: Postfix bounces it with 554 5.7.0 naming .exe', async () => {
    const zip = makeZip({ 'invoice.pdf.exe': 'MZ not really' });
    const mail = mailWith('banned', file('invoice.zip', zip, 'application/zip'));
    const queueId = await submit(e2e.ports[25], mail, REMOTE_CLIENT);
    const line = await e2e.postseal.message(queueId);
    expect(line).toMatchObject({ bank: 'default', verdict: 'reject' });
    expect(JSON.stringify(line)).toMatch(/BANNED_FILE.*part 2\/1 name \\"invoice\.pdf\.exe\\"/);
    const bounced = await waitFor(
      `Postfix's bounce of ${queueId}`,
      () =>
        e2e.postfix
          .maillog()
          .split('\n')
          .find((l) => l.includes(`${queueId}:`) && l.includes('status=bounced')),
      { explain: () => e2e.explain() },
    );
    expect(bounced).toContain('554 5.7.0 Message content rejected: banned content (.exe)');
    expect(bounced).not.toContain('invoice.pdf.exe');
  });
});
