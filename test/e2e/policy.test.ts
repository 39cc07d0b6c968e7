/**
 * The policy service through a real Postfix: examples/postfix/policy.cf appended to the
 * rendered main.cf (check_policy_service at RCPT and DATA), postseal's services.policy on the
 * remapped port 10040 with a short greylisting delay. A new triplet hears 450 4.7.1 at RCPT, the
 * retry after the delay is delivered once with Received-SPF and X-Greylist; an SPF fail hears
 * 550 5.7.23 at RCPT; a client in Debian's own /etc/postgrey/whitelist_clients is not greylisted.
 */
import { startE2E, type E2E } from './environment';
import { MAIL_DOMAIN } from './postfix';
import { REMOTE_CLIENT, testMail } from './submit';
import { TestClient, type Reply } from '../helpers/smtp-client';

const DELAY_SEC = 3;

describe('the policy service behind check_policy_service in a real Postfix', () => {
  let e2e: E2E;
  beforeAll(async () => {
    e2e = await startE2E(
      {
        'remote.test': { TXT: [`v=spf1 ip4:${REMOTE_CLIENT.addr} -all`] },
        'forged.test': { TXT: ['v=spf1 ip4:192.0.2.1 -all'] },
      },
      () => ({ services: { policy: { enabled: true, port: 10040, greylist: { delaySec: DELAY_SEC, whitelistClientFiles: ['/etc/postgrey/whitelist_clients'] } } } }),
    );
    await e2e.postfix.enablePolicyService();
  }, 120_000);
  afterAll(async () => {
    await e2e?.close();
  }, 60_000);

  /** One SMTP session as a remote client (XCLIENT); the RCPT reply, and the queue id if it was queued. */
  async function attempt(from: string, client = REMOTE_CLIENT, messageId?: string): Promise<{ rcpt: Reply; queueId?: string; mail: ReturnType<typeof testMail> }> {
    const mail = testMail({ from, subject: messageId ?? 'policy' });
    const c = await TestClient.connect(e2e.ports[25]);
    try {
      await c.cmd('EHLO relay.e2e.postseal.test');
      const x = await c.cmd(`XCLIENT ADDR=${client.addr} NAME=${client.name} HELO=${client.name}`);
      if (x.code !== 220) throw new Error(`XCLIENT refused: ${x.raw}`);
      const r = await c.send({ from, to: [`user@${MAIL_DOMAIN}`], data: mail.data });
      return { rcpt: r.rcpts[0], queueId: r.final?.code === 250 ? /queued as (\S+)/.exec(r.final.text)?.[1] : undefined, mail };
    } finally {
      await c.quit();
    }
  }

  it('greylists the first attempt with 450 4.7.1 and delivers the retry after the delay once, with Received-SPF and X-Greylist', async () => {
    const first = await attempt('alice@remote.test');
    expect(first.rcpt.code).toBe(450);
    expect(first.rcpt.raw).toMatch(
      /^450 4\.7\.1 <user@example\.test>: Recipient address rejected: Greylisted, try again in 3 seconds \(after \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)/,
    );
    await new Promise((r) => setTimeout(r, (DELAY_SEC + 0.5) * 1000));
    const retry = await attempt('alice@remote.test');
    expect(retry.rcpt.code).toBe(250);
    const copies = await e2e.postfix.delivered(retry.mail.messageId, () => e2e.explain());
    expect(copies).toHaveLength(1);
    expect(copies[0]).toMatch(
      /^Received-SPF: pass \(filter\.postseal\.test: domain of alice@remote\.test designates 198\.51\.100\.7 as permitted sender\) client-ip=198\.51\.100\.7; /m,
    );
    expect(copies[0]).toMatch(/^X-Greylist: delayed [34] seconds by postseal at filter\.postseal\.test; /m);
    expect(e2e.postfix.copies(first.mail.messageId)).toHaveLength(0);
  });

  it('rejects an SPF fail at RCPT with 550 5.7.23', async () => {
    const r = await attempt('bob@forged.test');
    expect(r.rcpt.raw).toMatch(/^550 5\.7\.23 <user@example\.test>: Recipient address rejected: SPF validation failed \(mailfrom fail\)/);
  });

  it("passes at once a client listed in Debian's /etc/postgrey/whitelist_clients, read unchanged", async () => {
    const r = await attempt('carol@remote.test', { addr: REMOTE_CLIENT.addr, name: 'bendel.debian.org' });
    expect(r.rcpt.code).toBe(250);
    expect(r.queueId).toBeDefined();
  });
});
