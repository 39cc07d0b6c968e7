/**
 * The promise postseal makes to Postfix (FILTER_README): a failure anywhere between the filter
 * port and the reinjection port leaves the message in Postfix's queue, deferred, and a retry
 * delivers it exactly once. Counted in the mailbox after `postqueue -f`.
 */
import { watch } from 'node:fs';
import { startE2E, type E2E } from './environment';
import type { QueueEntry } from './postfix';
import { REMOTE_CLIENT, submit, testMail } from './submit';
import { waitFor } from './wait';

/** Below Postfix's default message_size_limit (10240000), large enough to be mid-transfer for a while. */
const LARGE_MESSAGE_BYTES = 8_000_000;

describe('Postfix keeps the mail when the filter path fails', () => {
  let e2e: E2E;
  beforeAll(async () => {
    e2e = await startE2E();
  }, 120_000);
  afterAll(async () => {
    await e2e?.close();
  }, 60_000);

  const deferred = (queueId: string) => e2e.postfix.deferred(queueId, () => e2e.explain());

  /** `postqueue -f`, then the copies once the queue is empty and the message delivered. */
  async function flushedAndDelivered(messageId: string): Promise<string[]> {
    await e2e.postfix.flush();
    return e2e.postfix.delivered(messageId, () => e2e.explain());
  }

  it('defers mail while the reinjection smtpd on 10025 is down, and delivers it once after a flush', async () => {
    const mail = testMail({ from: 'bob@remote.test', subject: 'reinjection down' });
    const restore = await e2e.postfix.disableService(10025);
    let entry: QueueEntry;
    let queueId: string;
    try {
      queueId = await submit(e2e.ports[25], mail, REMOTE_CLIENT);
      entry = await deferred(queueId);
    } finally {
      await restore();
    }
    expect(entry.recipients[0].delay_reason).toMatch(/said: 451 4\.4\.\d .*\(in reply to RCPT TO command\)/);
    expect(e2e.postfix.copies(mail.messageId)).toHaveLength(0);

    expect(await flushedAndDelivered(mail.messageId)).toHaveLength(1);
    expect(await e2e.postseal.message(queueId)).toMatchObject({ bank: 'default', verdict: 'pass' });
  }, 60_000);

  it('redelivers mail exactly once after postseal is killed with SIGKILL while it receives DATA', async () => {
    const victim = e2e.postseal;
    const mail = testMail({ from: 'bob@remote.test', subject: 'sigkill during data', bodyBytes: LARGE_MESSAGE_BYTES });
    // postseal opens the message's spool file with the first DATA byte (the e2e config keeps
    // nothing in memory): the moment to kill it, with megabytes still to come.
    const watcher = watch(e2e.spoolDir, () => void victim.kill());
    let queueId: string;
    try {
      queueId = await submit(e2e.ports[25], mail, REMOTE_CLIENT);
      await waitFor('postseal to be killed', () => !victim.running, { explain: () => e2e.explain() });
    } finally {
      watcher.close();
    }
    const entry = await deferred(queueId);
    // Proves the kill landed inside DATA, not before it or after postseal answered the final
    // dot. Loopback socket buffers can take most of the 8 MB, so Postfix may already have sent
    // the dot when the kill lands ("while sending end of data"): still before any reply.
    expect(entry.recipients[0].delay_reason).toMatch(/lost connection with .* while sending (message body|end of data)/);
    expect(e2e.postfix.copies(mail.messageId)).toHaveLength(0);

    const revived = await e2e.restartPostseal();
    expect(await flushedAndDelivered(mail.messageId)).toHaveLength(1);
    expect(await revived.message(queueId)).toMatchObject({ bank: 'default', verdict: 'pass' });
  }, 60_000);
});
