/**
 * Inbound authentication through a real Postfix: mail signed for another domain (its key in
 * the loopback DNS) arrives on the MX port, goes through the default bank and lands with our
 * Authentication-Results, verified and not re-signed; SPF sees the client that Postfix
 * passed on with XFORWARD.
 */
import { corpusMessage, corpusZone } from '../helpers/auth';
import { startE2E, type E2E } from './environment';
import { FILTER_HOSTNAME } from './postseal-daemon';
import { REMOTE_CLIENT, submit } from './submit';
import { MAIL_DOMAIN } from './postfix';

const ours = new RegExp(`^Authentication-Results: ${FILTER_HOSTNAME.replace(/\./g, '\\.')};\\r?\\n((?:\\t.*\\r?\\n)+)`, 'm');

describe('inbound DKIM and SPF through a real Postfix', () => {
  let e2e: E2E;
  beforeAll(async () => {
    e2e = await startE2E({ ...structuredClone(corpusZone), 'example.com': { TXT: [`v=spf1 ip4:${REMOTE_CLIENT.addr} -all`] } });
  }, 120_000);
  afterAll(async () => {
    await e2e?.close();
  }, 60_000);

  async function deliver(file: string): Promise<{ copy: string; ar: string }> {
    const data = corpusMessage(file).toString('latin1');
    const messageId = /^Message-ID: <([^>]+)>/m.exec(data)![1];
    await submit(e2e.ports[25], { from: 'alice@example.com', to: `user@${MAIL_DOMAIN}`, messageId, data }, REMOTE_CLIENT);
    const copies = await e2e.postfix.delivered(messageId, () => e2e.explain());
    expect(copies).toHaveLength(1);
    const ar = ours.exec(copies[0])?.[1];
    if (!ar) throw new Error(`no Authentication-Results of ${FILTER_HOSTNAME} in:\n${copies[0]}\n${e2e.explain()}`);
    return { copy: copies[0], ar };
  }

  it('delivers mail pre-signed for another domain with dkim=pass for that domain, not re-signed', async () => {
    const { copy, ar } = await deliver('relaxed-relaxed.eml');
    expect(ar).toMatch(/^\tdkim=pass header\.d=example\.com header\.i=@example\.com header\.s=rsa header\.a=rsa-sha256 /m);
    expect(copy.match(/^DKIM-Signature:/gm)).toHaveLength(1);
  });

  it('delivers a tampered copy with dkim=fail', async () => {
    const { ar } = await deliver('tampered-body.eml');
    expect(ar).toMatch(/^\tdkim=fail \(body-hash-mismatch\) header\.d=example\.com /m);
  });

  it('checks SPF for the client address that Postfix passed with XFORWARD', async () => {
    const { ar } = await deliver('simple-simple.eml');
    expect(ar).toMatch(
      new RegExp(`^\\tspf=pass \\(.*designates ${REMOTE_CLIENT.addr.replace(/\./g, '\\.')} as permitted sender\\) smtp\\.mailfrom=alice@example\\.com smtp\\.helo=`, 'm'),
    );
  });
});
