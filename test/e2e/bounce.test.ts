/**
 * The DSN of a bounce verdict handed to a real Postfix: notify/bounce.ts sends it to the
 * default bank's notify target (the reinjection smtpd of examples/postfix, port 10027) from
 * the null sender, Postfix accepts and delivers it to the (local) envelope sender, and the
 * delivered copy is a valid RFC 3464 report read by Python's email package. No content stage
 * that decides `bounce` exists yet (they arrive with the content checks); the verdict is
 * made here, the sending is the real one.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createLogger } from '../../src/lib/log';
import { ResultSet } from '../../src/lib/results';
import { bounceMessage } from '../../src/notify/bounce';
import { DownstreamPool } from '../../src/reinject/pool';
import { replies } from '../../src/smtp/replies';
import { openSqliteStore } from '../../src/store/sqlite';
import { loadTestBank } from '../helpers/banks';
import { testTransaction } from '../helpers/stage-run';
import { startE2E, type E2E } from './environment';
import { MAIL_DOMAIN } from './postfix';
import { waitFor } from './wait';
import path from 'node:path';

describe('a bounce DSN through a real Postfix', () => {
  let e2e: E2E;
  beforeAll(async () => {
    e2e = await startE2E();
  }, 120_000);
  afterAll(async () => {
    await e2e?.close();
  }, 60_000);

  it('is accepted by the notify target from <> and delivered to the sender as a valid multipart/report', async () => {
    const bank = loadTestBank({ notify: { host: '127.0.0.1', port: e2e.ports[10027] } });
    const log = createLogger('silent');
    const pool = new DownstreamPool(bank.notify!, 'filter.postseal.test', log);
    const store = openSqliteStore({ file: path.join(e2e.postfix.dir, 'bounce.db'), keyPrefix: 'ps:', busyTimeoutMs: 1000 });
    const original = `bounced.${randomBytes(6).toString('hex')}@remote.test`;
    const base = testTransaction(`From: <sender@${MAIL_DOMAIN}>\r\nSubject: banned attachment\r\nMessage-ID: <${original}>\r\n\r\nthe content\r\n`, {
      mailFrom: `sender@${MAIL_DOMAIN}`,
    });
    const tx = { ...base, envelope: { ...base.envelope, envid: 'e2e+2Bbounce', recipients: [{ address: `user@${MAIL_DOMAIN}`, orcpt: `rfc822;user@${MAIL_DOMAIN}` }] } };
    const result = {
      verdict: { action: 'bounce' as const, reply: replies.contentRejected, reason: 'BANNED_FILENAME', fields: [] },
      findings: [{ code: 'BANNED_FILENAME' }],
      timings: {},
      spools: [],
      bankName: 'default',
      results: new ResultSet(),
    };
    try {
      const reply = await bounceMessage({ pool, store, hostname: 'filter.postseal.test', log }, { tx, received: tx.message, result });
      expect(reply).toEqual(replies.bounced);
    } finally {
      await pool.close();
      await store.close();
    }
    // The DSN names the original Message-ID in its attached header, not in its own.
    const dsn = await waitFor(
      "the DSN in the sender's mailbox",
      async () => {
        const found = e2e.postfix.mailbox().filter((m) => m.includes(original));
        return (await e2e.postfix.queue()).length === 0 && found.length > 0 && found;
      },
      {
        explain: () => e2e.explain(),
      },
    );
    expect(dsn).toHaveLength(1);
    expect(dsn[0]).toMatch(/^Return-Path: <>\r?$/m);
    // Without mbox's own "From " line.
    dsn[0] = dsn[0].slice(dsn[0].indexOf('\n') + 1);
    const parsed = JSON.parse(
      execFileSync(
        'python3',
        [
          '-c',
          'import email,json,sys\nm=email.message_from_bytes(sys.stdin.buffer.read())\np=m.get_payload()\nprint(json.dumps({"type":m.get_content_type(),"rt":m.get_param("report-type"),"defects":[str(d) for d in m.defects],"parts":[x.get_content_type() for x in p],"status":[dict(b.items()) for b in p[1].get_payload()],"headers":p[2].get_payload()}))',
        ],
        { input: Buffer.from(dsn[0], 'latin1') },
      ).toString(),
    );
    expect(parsed).toMatchObject({ type: 'multipart/report', rt: 'delivery-status', defects: [], parts: ['text/plain', 'message/delivery-status', 'text/rfc822-headers'] });
    expect(parsed.status[0]).toMatchObject({ 'Reporting-MTA': 'dns; filter.postseal.test', 'Original-Envelope-Id': 'e2e+2Bbounce' });
    expect(parsed.status[1]).toMatchObject({ 'Final-Recipient': `rfc822; user@${MAIL_DOMAIN}`, Action: 'failed', Status: '5.7.1' });
    expect(parsed.headers).toContain('Subject: banned attachment');
    expect(parsed.headers).not.toContain('the content');
  });
});
