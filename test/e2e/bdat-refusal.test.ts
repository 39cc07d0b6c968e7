/**
 * A message the reinjection smtpd refuses at its first BDAT chunk is refused, not deferred.
 * Postfix's smtpd counts every chunk it skips after the refusal as an error and hangs up at
 * smtpd_hard_error_limit (20 by default; the example master.cf sets 1000, this test puts the
 * default back): before postseal stopped at a refused chunk and kept that refusal through a
 * hang-up, this message was deferred (451 4.3.0).
 */
import { startE2E, type E2E } from './environment';
import { REMOTE_CLIENT, submit, testMail } from './submit';
import { waitFor } from './wait';

describe('a large message refused at its first BDAT chunk', () => {
  let e2e: E2E;
  beforeAll(async () => {
    e2e = await startE2E();
  }, 120_000);
  afterAll(async () => {
    await e2e?.close();
  }, 60_000);

  it('bounces with the reinjection smtpd reply, not deferred, under the default smtpd_hard_error_limit', async () => {
    await e2e.postfix.setServiceParameters(10025, {
      smtpd_data_restrictions: 'reject',
      smtpd_soft_error_limit: '10',
      smtpd_hard_error_limit: '20',
      smtpd_error_sleep_time: '0',
    });
    // About 30 chunks of 256 KB.
    const mail = testMail({ from: 'bob@remote.test', subject: 'refused at the first chunk', bodyBytes: 7_500_000 });
    const queueId = await submit(e2e.ports[25], mail, REMOTE_CLIENT);
    const line = await waitFor(
      `${queueId} bounced or deferred`,
      () =>
        e2e.postfix
          .maillog()
          .split('\n')
          .find((l) => l.includes(`${queueId}: to=`) && /status=(bounced|deferred)/.test(l)),
      { explain: () => e2e.explain() },
    );
    expect(line).toMatch(/status=bounced .*said: 5\d\d .*in reply to end of DATA command/);
  }, 90_000);
});
