/**
 * The amavisd-new dual path with a real Postfix configured from examples/postfix: Postfix
 * picks postseal's port (FILTER tags, content_filter), postseal picks the bank by that port
 * and reinjects on the bank's port, and the mail lands in the mailbox once.
 */
import { startE2E, type E2E } from './environment';
import { FILTER_HOSTNAME } from './postseal-daemon';
import { waitFor } from './wait';
import { REMOTE_CLIENT, submit, testMail } from './submit';

const trace = (bank: string) => new RegExp(`^X-Postseal-Trace: ${FILTER_HOSTNAME.replace(/\./g, '\\.')} ${bank}\\r?$`, 'm');

describe('the dual path through a real Postfix', () => {
  let e2e: E2E;
  beforeAll(async () => {
    // NOCHECKS reinjects with a connection per message, so Postfix logs each session's commands.
    e2e = await startE2E({}, {}, { banks: { NOCHECKS: { forward: { maxIdleConnections: 0 } } } });
  }, 120_000);
  afterAll(async () => {
    await e2e?.close();
  }, 60_000);

  const delivered = (messageId: string) => e2e.postfix.delivered(messageId, () => e2e.explain());

  /** Postfix's log line for the reinjected copy of `queueId`, from the named reinjection service. */
  function reinjection(service: string, queueId: string): string | undefined {
    return e2e.postfix
      .maillog()
      .split('\n')
      .find((l) => l.includes(`postfix/${service}/smtpd[`) && l.includes(`orig_queue_id=${queueId}`));
  }

  it('sends mail from the submission port through the ORIGINATING bank, 10026 to 10027', async () => {
    const mail = testMail({ from: 'alice@example.org', subject: 'originating' });
    const queueId = await submit(e2e.ports[587], mail);
    const copies = await delivered(mail.messageId);
    expect(copies).toHaveLength(1);
    expect(copies[0]).toMatch(trace('ORIGINATING'));
    expect(await e2e.postseal.message(queueId)).toMatchObject({ bank: 'ORIGINATING', port: e2e.ports[10026], verdict: 'pass' });
    expect(reinjection('reinject-originating', queueId)).toContain(`postfix/reinject-originating/smtpd`);
  });

  it('sends MX mail through the default bank, 10024 to 10025, with the client address passed on by XFORWARD', async () => {
    const mail = testMail({ from: 'bob@remote.test', subject: 'inbound' });
    const queueId = await submit(e2e.ports[25], mail, REMOTE_CLIENT);
    const copies = await delivered(mail.messageId);
    expect(copies).toHaveLength(1);
    expect(copies[0]).toMatch(trace('default'));
    expect(copies[0]).not.toMatch(trace('ORIGINATING'));
    expect(await e2e.postseal.message(queueId)).toMatchObject({ bank: 'default', port: e2e.ports[10024], client: REMOTE_CLIENT.addr, verdict: 'pass' });
    expect(reinjection('reinject', queueId)).toContain(`orig_client=${REMOTE_CLIENT.name}[${REMOTE_CLIENT.addr}]`);
  });

  it('sends list-manager mail through the NOCHECKS bank, 10028 to 10025, without adding a trace field', async () => {
    const mail = testMail({ from: 'list-bounces@example.org', subject: 'list fan-out' });
    const queueId = await submit(e2e.ports[10029], mail);
    const copies = await delivered(mail.messageId);
    expect(copies).toHaveLength(1);
    expect(copies[0]).not.toMatch(/^X-Postseal-Trace:/m);
    expect(await e2e.postseal.message(queueId)).toMatchObject({ bank: 'NOCHECKS', port: e2e.ports[10028], verdict: 'pass' });
    expect(reinjection('reinject', queueId)).toBeDefined();
    // The reinjection smtpd offers CHUNKING and PIPELINING: the message went as one BDAT, its
    // MAIL and RCPT in one write (Postfix counts the session's commands when it ends).
    const session = await waitFor('the reinjection session to end', async () =>
      e2e.postfix
        .maillog()
        .split('\n')
        .find((l) => l.includes('postfix/reinject/smtpd[') && / disconnect from .* bdat=1 /.test(l)),
    );
    expect(session).toMatch(/ ehlo=1 (xforward=1 )?mail=1 rcpt=1 bdat=1 quit=1 commands=[56]$/);
  });
});
