/**
 * DMARC reports from mail that went through a real Postfix: a mix of DMARC pass, fail under
 * p=reject (rejected) and fail under p=quarantine for two domains arrives on the MX port; the
 * report built from the store postseal wrote has exactly those counts, and so has the report
 * mail that Postfix delivers after it was handed to its originating reinjection port (the
 * shipped notify target). The postseal daemon sends failure reports for the rejected mail the
 * same way; the rua and ruf addresses are in Postfix's mailbox domain, authorized by
 * `_report._dmarc` records.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { simpleParser } from 'mailparser';
import pino from 'pino';
import { sinkTarget } from '../helpers/sink';
import { createDnsResolver } from '../../src/lib/dns';
import { DownstreamPool } from '../../src/reinject/pool';
import { poolSender, runReports } from '../../src/services/dmarc-reports';
import { StoredDmarcResults, utcDay } from '../../src/store/dmarc-results';
import { openSqliteStore } from '../../src/store/sqlite';
import type { Store } from '../../src/store/store';
import { startE2E, type E2E } from './environment';
import { MAIL_DOMAIN } from './postfix';
import { REMOTE_CLIENT, submit } from './submit';
import { waitFor } from './wait';
import { afterToday, clearOfMidnight } from '../helpers/report-day';

const zone = {
  'a.test': { TXT: [`v=spf1 ip4:${REMOTE_CLIENT.addr} -all`] },
  '_dmarc.a.test': { TXT: [`v=DMARC1; p=reject; rua=mailto:agg-a@${MAIL_DOMAIN}; ruf=mailto:ruf-a@${MAIL_DOMAIN}`] },
  [`a.test._report._dmarc.${MAIL_DOMAIN}`]: { TXT: ['v=DMARC1'] },
  'b.test': { TXT: ['v=spf1 -all'] },
  '_dmarc.b.test': { TXT: [`v=DMARC1; p=quarantine; rua=mailto:agg-b@${MAIL_DOMAIN}`] },
  [`b.test._report._dmarc.${MAIL_DOMAIN}`]: { TXT: ['v=DMARC1'] },
};

describe('DMARC aggregate reports through a real Postfix', () => {
  let e2e: E2E;
  let store: Store;
  beforeAll(async () => {
    e2e = await startE2E(zone, { store: { backend: 'sqlite', sqlite: { file: 'state.db' } }, services: { dmarcReports: { enabled: true, failureReports: { enabled: true } } } });
    store = openSqliteStore({ file: path.join(e2e.postfix.dir, 'postseal', 'state.db'), keyPrefix: 'postseal:', busyTimeoutMs: 2000 });
  }, 120_000);
  afterAll(async () => {
    await store?.close();
    await e2e?.close();
  }, 60_000);

  let n = 0;
  async function send(mailFrom: string, headerFrom: string): Promise<void> {
    const messageId = `dmarc-report-${++n}@e2e.test`;
    const data = `From: <${headerFrom}>\r\nTo: <user@${MAIL_DOMAIN}>\r\nSubject: report test ${n}\r\nMessage-ID: <${messageId}>\r\n\r\nbody ${n}\r\n`;
    await submit(e2e.ports[25], { from: mailFrom, to: `user@${MAIL_DOMAIN}`, messageId, data }, REMOTE_CLIENT);
  }

  it('reports per domain count exactly the messages that were checked, with their dispositions, in the report Postfix delivers', async () => {
    await clearOfMidnight(60_000);
    for (let i = 0; i < 3; i++) await send('alice@a.test', 'alice@a.test'); // SPF aligned: pass
    for (let i = 0; i < 2; i++) await send('mallory@remote.test', 'alice@a.test'); // fail, p=reject: 550
    for (let i = 0; i < 2; i++) await send('bob@b.test', 'bob@b.test'); // SPF -all: fail, p=quarantine: tagged
    const results = new StoredDmarcResults(store);
    const today = utcDay(new Date());
    const deadline = Date.now() + 60_000;
    const stored = async () => (await results.peek('a.test', today)).messages + (await results.peek('b.test', today)).messages;
    while ((await stored()) < 7) {
      if (Date.now() > deadline) throw new Error(`only ${await stored()} DMARC results stored\n${e2e.explain()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const resolver = createDnsResolver({ servers: [zoneServer(e2e)], timeoutMs: 2000, retries: 0, cacheMaxEntries: 0, cacheMaxTtlSec: 0 });
    const tomorrow = afterToday();
    const settings = {
      orgName: 'e2e',
      email: 'r@e2e.test',
      from: 'r@e2e.test',
      submitter: 'e2e.test',
      lockTtlMs: 60000,
      retryBaseMs: 1000,
      retryMaxMs: 1000,
      maxReportsPerRun: 10,
    };
    const noSend = () => {
      throw new Error('a dry run sends nothing');
    };
    const out = await runReports({ store, results, resolver, send: noSend, now: () => tomorrow, owner: 'e2e' }, settings, { dryRun: true });
    const rows = (xml: string) =>
      [...xml.matchAll(/<count>(\d+)<\/count>\s*<policy_evaluated><disposition>(\w+)<\/disposition><dkim>(\w+)<\/dkim><spf>(\w+)<\/spf>/g)]
        .map((m) => `${m[1]} ${m[2]} spf=${m[4]}`)
        .sort();
    const xmlOf = (domain: string) => out.find((o) => o.policyDomain === domain)?.report?.xml ?? '';
    expect(out.map((o) => [o.policyDomain, o.status, o.messages])).toEqual([
      ['a.test', 'dry-run', 5],
      ['b.test', 'dry-run', 2],
    ]);
    expect(rows(xmlOf('a.test'))).toEqual(['2 reject spf=fail', '3 none spf=pass']);
    expect(rows(xmlOf('b.test'))).toEqual(['2 none spf=fail']);

    // Now for real, through Postfix's originating reinjection port (the shipped notify target).
    const pool = new DownstreamPool(sinkTarget(e2e.ports[10027], { heloName: 'e2e.test', dataDoneTimeoutMs: 30000 }), 'e2e.test', pino({ level: 'silent' }));
    try {
      const sent = await runReports({ store, results, resolver, send: poolSender(pool), now: () => tomorrow, owner: 'e2e' }, settings);
      expect(sent.map((o) => [o.policyDomain, o.status, o.messages, o.to])).toEqual([
        ['a.test', 'sent', 5, [`agg-a@${MAIL_DOMAIN}`]],
        ['b.test', 'sent', 2, [`agg-b@${MAIL_DOMAIN}`]],
      ]);
    } finally {
      await pool.close();
    }
    const delivered = async (domain: string) =>
      waitFor(`the ${domain} aggregate report in the mailbox`, async () => e2e.postfix.mailbox().find((m) => m.includes(`Subject: Report Domain: ${domain} Submitter: e2e.test`)), {
        explain: e2e.explain,
      });
    for (const domain of ['a.test', 'b.test']) {
      const mail = await simpleParser(Buffer.from((await delivered(domain)).replace(/^From .*\n/, ''), 'latin1'));
      const gz = mail.attachments.find((a) => a.filename?.endsWith('.xml.gz'));
      expect(gz?.filename).toMatch(new RegExp(`^e2e\\.test!${domain.replace('.', '\\.')}!\\d+!\\d+\\.xml\\.gz$`));
      expect(rows(gunzipSync(gz!.content).toString('utf8'))).toEqual(rows(xmlOf(domain)));
    }
    expect(await results.periods()).toEqual([]);
  }, 120_000);

  it('sends a failure report for each rejected message through Postfix, and none for mail that passed', async () => {
    const reports = () => e2e.postfix.mailbox().filter((m) => /^Feedback-Type: auth-failure$/m.test(m));
    await waitFor('two failure reports in the mailbox', async () => reports().length >= 2, { explain: e2e.explain });
    // Postfix has delivered everything the daemon handed over: no third one is on its way.
    await waitFor('an empty queue', async () => (await e2e.postfix.queue()).length === 0, { explain: e2e.explain });
    const got = reports();
    expect(got).toHaveLength(2);
    for (const m of got) {
      expect(m).toMatch(new RegExp(`^To: ruf-a@${MAIL_DOMAIN.replace('.', '\\.')}$`, 'm'));
      expect(m).toMatch(/^Reported-Domain: a\.test$/m);
      // redactLocalParts (the default) covers the envelope sender too (a VERP sender names a recipient).
      expect(m).toMatch(/^Original-Mail-From: <redacted@remote\.test>$/m);
      expect(m).toMatch(new RegExp(`^Source-IP: ${REMOTE_CLIENT.addr.replace(/\./g, '\\.')}$`, 'm'));
      expect(m).toMatch(/^Delivery-Result: reject$/m);
      expect(m).toMatch(/^Content-Type: text\/rfc822-headers$/m);
      expect(m).not.toMatch(/^body \d+$/m);
    }
  }, 120_000);
});

/** The loopback DNS server the e2e postseal asks (dns.servers of its config). */
function zoneServer(e2e: E2E): string {
  const yaml = readFileSync(path.join(e2e.postfix.dir, 'postseal', 'postseal.yaml'), 'utf8');
  const m = /servers:\n\s+- (\S+)/.exec(yaml);
  if (!m) throw new Error('no dns.servers in the e2e postseal.yaml');
  return m[1].replace(/^"|"$/g, '');
}
