/**
 * A full spool disk through a real Postfix: postseal answers the end of data 452 4.3.1
 * (SPOOL_FULL), Postfix keeps the message deferred, and once space returns a flush delivers
 * it exactly once. The spool folder of the running postseal gets a small tmpfs mounted over
 * it (test/helpers/tmpfs.ts; root, as CI runs), then filled.
 */
import { startE2E, type E2E } from './environment';
import { REMOTE_CLIENT, submit, testMail } from './submit';
import { waitFor } from './wait';
import { mountSmallDisk, type SmallDisk } from '../helpers/tmpfs';

describe('Postfix keeps the mail while postseal spool disk is full', () => {
  let e2e: E2E;
  let disk: SmallDisk | undefined;
  beforeAll(async () => {
    e2e = await startE2E();
  }, 120_000);
  afterAll(async () => {
    disk?.unmount();
    await e2e?.close();
  }, 60_000);

  it('defers the message with 452 4.3.1 while the spool disk is full, and delivers it once after space returns and a flush', async () => {
    disk = mountSmallDisk(256 * 1024, e2e.spoolDir);
    await disk.fill();
    const mail = testMail({ from: 'bob@remote.test', subject: 'spool disk full', bodyBytes: 64 * 1024 });
    const queueId = await submit(e2e.ports[25], mail, REMOTE_CLIENT);
    const entry = await e2e.postfix.deferred(queueId, () => e2e.explain());
    expect(entry.recipients[0].delay_reason).toMatch(/said: 452 4\.3\.1 Insufficient system storage, try again later \(in reply to end of DATA command\)/);
    expect(e2e.postfix.copies(mail.messageId)).toHaveLength(0);

    await disk.free();
    await e2e.postfix.flush();
    expect(await e2e.postfix.delivered(mail.messageId, () => e2e.explain())).toHaveLength(1);
    // Two lines for the queue id: the attempt the full disk refused, then the delivery.
    const lines = await waitFor(
      'the log line of the delivery',
      () => {
        const found = e2e.postseal.logs.filter((l) => l.msg === 'message' && l.queueId === queueId);
        return found.length >= 2 && found;
      },
      { explain: () => e2e.explain() },
    );
    expect(lines.map((l) => [l.code, l.verdict])).toEqual([
      ['SPOOL_FULL', undefined],
      [undefined, 'pass'],
    ]);
  }, 90_000);
});
