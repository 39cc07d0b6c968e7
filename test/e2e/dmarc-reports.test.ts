/**
 * DMARC aggregate reports from mail that went through a real Postfix: a mix of DMARC pass,
 * fail under p=reject (rejected) and fail under p=quarantine for two domains arrives on the MX
 * port; the report built from the store postseal wrote has exactly those counts.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createDnsResolver } from '../../src/lib/dns';
import { runReports } from '../../src/services/dmarc-reports';
import { StoredDmarcResults, utcDay } from '../../src/store/dmarc-results';
import { openSqliteStore } from '../../src/store/sqlite';
import type { Store } from '../../src/store/store';
import { startE2E, type E2E } from './environment';
import { MAIL_DOMAIN } from './postfix';
import { REMOTE_CLIENT, submit } from './submit';

const zone = {
  'a.test': { TXT: [`v=spf1 ip4:${REMOTE_CLIENT.addr} -all`] },
  '_dmarc.a.test': { TXT: ['v=DMARC1; p=reject; rua=mailto:agg@a.test'] },
  'b.test': { TXT: ['v=spf1 -all'] },
  '_dmarc.b.test': { TXT: ['v=DMARC1; p=quarantine; rua=mailto:agg@b.test'] },
};

describe('DMARC aggregate reports through a real Postfix', () => {
  let e2e: E2E;
  let store: Store;
  beforeAll(async () => {
    e2e = await startE2E(zone, { store: { backend: 'sqlite', sqlite: { file: 'state.db' } } });
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

  it('reports per domain count exactly the messages that were checked, with their dispositions', async () => {
    for (let i = 0; i < 3; i++) await send('alice@a.test', 'alice@a.test'); // SPF aligned: pass
    for (let i = 0; i < 2; i++) await send('mallory@remote.test', 'alice@a.test'); // fail, p=reject: 550
    for (let i = 0; i < 2; i++) await send('bob@b.test', 'bob@b.test'); // SPF -all: fail, p=quarantine: tagged
    const results = new StoredDmarcResults(store);
    const today = utcDay(new Date());
    const deadline = Date.now() + 60_000;
    const stored = async () => (await results.peek('a.test', today)).records.length + (await results.peek('b.test', today)).records.length;
    while ((await stored()) < 7) {
      if (Date.now() > deadline) throw new Error(`only ${await stored()} DMARC results stored\n${e2e.explain()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const resolver = createDnsResolver({ servers: [zoneServer(e2e)], timeoutMs: 2000, retries: 0, cacheMaxEntries: 0, cacheMaxTtlSec: 0 });
    const tomorrow = new Date(Date.now() + 24 * 3600 * 1000);
    const out = await runReports(
      {
        store,
        results,
        resolver,
        send: () => {
          throw new Error('a dry run sends nothing');
        },
        now: () => tomorrow,
        owner: 'e2e',
      },
      { orgName: 'e2e', email: 'r@e2e.test', from: 'r@e2e.test', submitter: 'e2e.test', lockTtlMs: 60000, retryBaseMs: 1000, retryMaxMs: 1000, maxReportsPerRun: 10 },
      { dryRun: true },
    );
    const rows = (domain: string) => {
      const xml = out.find((o) => o.policyDomain === domain)?.report?.xml ?? '';
      return [...xml.matchAll(/<count>(\d+)<\/count>\s*<policy_evaluated><disposition>(\w+)<\/disposition><dkim>(\w+)<\/dkim><spf>(\w+)<\/spf>/g)]
        .map((m) => `${m[1]} ${m[2]} spf=${m[4]}`)
        .sort();
    };
    expect(out.map((o) => [o.policyDomain, o.status, o.messages])).toEqual([
      ['a.test', 'dry-run', 5],
      ['b.test', 'dry-run', 2],
    ]);
    expect(rows('a.test')).toEqual(['2 reject spf=fail', '3 none spf=pass']);
    expect(rows('b.test')).toEqual(['2 none spf=fail']);
  }, 120_000);
});

/** The loopback DNS server the e2e postseal asks (dns.servers of its config). */
function zoneServer(e2e: E2E): string {
  const yaml = readFileSync(path.join(e2e.postfix.dir, 'postseal', 'postseal.yaml'), 'utf8');
  const m = /servers:\n\s+- (\S+)/.exec(yaml);
  if (!m) throw new Error('no dns.servers in the e2e postseal.yaml');
  return m[1].replace(/^"|"$/g, '');
}
