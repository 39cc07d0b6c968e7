/**
 * Spam checks through a real Postfix (examples/postfix layout) with Debian's real spamd
 * (test/helpers/spamd.ts, on its unix socket): the default bank lists spam and spam-tag with tag2Level 3, so a
 * message hitting the 3.5-point test rule is delivered tagged as spam (X-Spam-Flag: YES and
 * the Subject tag), and GTUBE (1000 points) is above killLevel: postseal answers 554 5.7.0,
 * and Postfix bounces it instead of delivering it. With spamd gone, the mail stays in Postfix's
 * queue, deferred with 451 4.3.0.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { GTUBE, TAG_SUBJECT, startSpamd, type Spamd } from '../helpers/spamd';
import { startE2E, type E2E } from './environment';
import { REMOTE_CLIENT, submit, testMail } from './submit';
import { waitFor } from './wait';

const shippedDefault = YAML.parse(readFileSync(path.join(__dirname, '../../policy-banks/default.yaml'), 'utf8')) as { stages: string[] };

describe('spam checks through a real Postfix', () => {
  let spamd: Spamd;
  let e2e: E2E;
  beforeAll(async () => {
    spamd = await startSpamd();
    e2e = await startE2E(
      {},
      {},
      {
        banks: {
          default: {
            stages: [...shippedDefault.stages, 'spam', 'spam-tag'],
            // The unix socket: every `port` in an e2e bank is read as an example port and remapped.
            spam: { spamd: { enabled: true, socket: spamd.socket, timeoutMs: 20000 }, tag2Level: 3, subjectTag: '***SPAM*** ' },
          },
        },
      },
    );
  }, 120_000);
  afterAll(async () => {
    await e2e?.close();
    await spamd?.stop();
  }, 60_000);

  it('delivers a message above tag2Level tagged: X-Spam-Flag: YES, the score, and the Subject tag', async () => {
    const mail = testMail({ from: 'bob@remote.test', subject: `offer ${TAG_SUBJECT}` });
    const queueId = await submit(e2e.ports[25], mail, REMOTE_CLIENT);
    const copies = await e2e.postfix.delivered(mail.messageId, () => e2e.explain());
    expect(copies).toHaveLength(1);
    expect(copies[0]).toMatch(/^X-Spam-Flag: YES\r?$/m);
    expect(copies[0]).toMatch(/^X-Spam-Status: Yes, score=3\.5 tagged_above=2 required=3\r?\n tests=\[POSTSEAL_TAG_SUBJECT=3\.5\]\r?$/m);
    expect(copies[0]).toMatch(new RegExp(`^Subject: \\*\\*\\*SPAM\\*\\*\\* offer ${TAG_SUBJECT}\\r?$`, 'm'));
    expect(await e2e.postseal.message(queueId)).toMatchObject({ bank: 'default', verdict: 'tag' });
  });

  it('rejects GTUBE above killLevel with 554 5.7.0, which Postfix bounces instead of delivering', async () => {
    const mail = testMail({ from: 'bob@remote.test', subject: 'gtube' });
    mail.data = mail.data.replace(/\r\n\r\nhello\r\n$/, `\r\n\r\n${GTUBE}\r\n`);
    const queueId = await submit(e2e.ports[25], mail, REMOTE_CLIENT);
    const bounced = await waitFor(
      `${queueId} bounced`,
      () =>
        e2e.postfix
          .maillog()
          .split('\n')
          .find((l) => l.includes(`${queueId}: to=<${mail.to}>`) && l.includes('status=bounced')),
      { explain: () => e2e.explain() },
    );
    expect(bounced).toMatch(/said: 554 5\.7\.0 Message rejected as spam \(in reply to end of DATA command\)/);
    expect(e2e.postfix.copies(mail.messageId)).toHaveLength(0);
    expect(await e2e.postseal.message(queueId)).toMatchObject({ bank: 'default', verdict: 'reject' });
  });

  it('keeps the mail queued, deferred with 451 4.3.0, while spamd is down', async () => {
    await spamd.kill();
    const mail = testMail({ from: 'bob@remote.test', subject: 'spamd down' });
    const queueId = await submit(e2e.ports[25], mail, REMOTE_CLIENT);
    const entry = await e2e.postfix.deferred(queueId, () => e2e.explain());
    expect(entry.recipients[0].delay_reason).toMatch(/said: 451 4\.3\.0 Spam check could not complete, try again later \(in reply to end of DATA command\)/);
    expect(e2e.postfix.copies(mail.messageId)).toHaveLength(0);
  });
});
