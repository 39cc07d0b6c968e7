/**
 * What the dmarc stage stores for the aggregate reports (src/stages/dmarc/evaluate.ts record):
 * only DKIM signatures that were verified, names cut to DNS lengths, and the stage's own
 * alignment verdicts; the null sender's SPF is HELO's.
 */
import type { DmarcResultRecord, DmarcResultStore, RecordOptions } from '../../src/store/dmarc-results';
import type { Transaction } from '../../src/transaction/transaction';
import { dkimVerifyStage } from '../../src/stages/dkim-verify';
import { dmarcStage } from '../../src/stages/dmarc';
import { spfStage } from '../../src/stages/spf';
import { startDnsServer, type DnsServer } from '../helpers/dns-server';
import { runStage, testStageDeps, testTransaction } from '../helpers/stage-run';

let dns: DnsServer;
beforeAll(async () => {
  dns = await startDnsServer({
    'victim.test': { TXT: ['v=spf1 ip4:192.0.2.25 -all'] },
    'mx.victim.test': { TXT: ['v=spf1 ip4:192.0.2.25 -all'] },
    '_dmarc.victim.test': { TXT: ['v=DMARC1; p=none; rua=mailto:agg@victim.test'] },
    '_dmarc.ruaonly.test': { TXT: ['v=DMARC1; rua=mailto:agg@ruaonly.test'] },
    'strict.test': { TXT: ['v=spf1 -all'] },
    '_dmarc.strict.test': { TXT: ['v=DMARC1; p=reject; rua=mailto:agg@strict.test'] },
  });
});
afterAll(() => dns.close());

const options: (RecordOptions | undefined)[] = [];

async function recorded(
  message: string,
  mailFrom: string,
  bank: Record<string, unknown> = {},
  tx: Transaction = testTransaction(message, { mailFrom, client: { addr: '192.0.2.25', helo: 'mx.victim.test' } }),
): Promise<DmarcResultRecord[]> {
  const kept: DmarcResultRecord[] = [];
  const store: DmarcResultStore = {
    record: async (r, o) => {
      kept.push(r);
      options.push(o);
    },
  };
  const deps = { ...testStageDeps(dns, { timeoutMs: 2000 }), dmarcStore: store };
  const dkim = await runStage(dkimVerifyStage, tx, deps);
  const spf = await runStage(spfStage, tx, deps, {}, dkim.results);
  await runStage(dmarcStage, tx, deps, bank, spf.results);
  return kept;
}

test('a message with a megabyte of DKIM-Signature fields leaves a small record: signatures past the verify limit are not stored', async () => {
  const sig = `DKIM-Signature: v=1; a=rsa-sha256; d=${'a'.repeat(60)}.example; s=${'s'.repeat(400)}; h=from; bh=x; b=y\r\n`;
  const raw = `${sig.repeat(Math.floor(1000000 / sig.length))}From: x@victim.test\r\n\r\nhi\r\n`;
  const [r] = await recorded(raw, 'x@victim.test');
  expect(r.dkim.length).toBeLessThanOrEqual(10);
  for (const d of r.dkim) expect(d.selector.length).toBeLessThanOrEqual(63);
  expect(JSON.stringify(r).length).toBeLessThan(4000);
  expect(r).toMatchObject({ dkimAligned: false, spfAligned: true, spf: { domain: 'victim.test', result: 'pass', scope: 'mfrom' } });
});

test("the null sender's SPF result is stored with scope helo", async () => {
  const [r] = await recorded('From: x@victim.test\r\n\r\nhi\r\n', '');
  expect(r.spf).toMatchObject({ domain: 'mx.victim.test', scope: 'helo' });
});

test('a record with rua= but no p= is applied as p=none and its results are kept for the report (RFC 7489 6.6.3)', async () => {
  const [r] = await recorded('From: x@ruaonly.test\r\n\r\nhi\r\n', 'x@ruaonly.test');
  expect(r).toMatchObject({ policyDomain: 'ruaonly.test', policy: 'none' });
});

test('a failed p=reject the bank only tags is recorded with the override reason local_policy; one it rejects without', async () => {
  const msg = 'From: x@strict.test\r\nMessage-ID: <m1@strict.test>\r\n\r\nhi\r\n';
  const [tagged] = await recorded(msg, 'x@strict.test', { dmarc: { onReject: 'tag' } });
  expect(tagged).toMatchObject({ result: 'fail', policy: 'reject', disposition: 'none', override: 'local_policy' });
  const [rejected] = await recorded(msg, 'x@strict.test', { dmarc: { onReject: 'reject' } });
  expect(rejected).toMatchObject({ disposition: 'reject' });
  expect(rejected.override).toBeUndefined();
});

test('a message with a Postfix queue ID is recorded under an id that is the same on each retry', async () => {
  const msg = 'From: x@victim.test\r\nMessage-ID: <m2@victim.test>\r\n\r\nhi\r\n';
  const attempt = () => ({ ...testTransaction(msg, { mailFrom: 'x@victim.test', client: { addr: '192.0.2.25', helo: 'mx.victim.test' } }), queueId: '4ABCD12345' });
  options.length = 0;
  await recorded(msg, 'x@victim.test', {}, attempt());
  await recorded(msg, 'x@victim.test', {}, attempt());
  await recorded(msg, 'x@victim.test');
  expect(options[0]?.once).toMatch(/^[0-9a-f]{32}$/);
  expect(options[1]?.once).toBe(options[0]?.once);
  // Without a queue ID, nothing to recognize a retry by.
  expect(options[2]?.once).toBeUndefined();
});
