/**
 * What the dmarc stage stores for the aggregate reports (src/stages/dmarc/evaluate.ts record):
 * only DKIM signatures that were verified, names cut to DNS lengths, and the stage's own
 * alignment verdicts; the null sender's SPF is HELO's.
 */
import type { DmarcResultRecord, DmarcResultStore } from '../../src/store/dmarc-results';
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
  });
});
afterAll(() => dns.close());

async function recorded(message: string, mailFrom: string): Promise<DmarcResultRecord[]> {
  const kept: DmarcResultRecord[] = [];
  const store: DmarcResultStore = { record: async (r) => void kept.push(r) };
  const deps = { ...testStageDeps(dns, { timeoutMs: 2000 }), dmarcStore: store };
  const tx = testTransaction(message, { mailFrom, client: { addr: '192.0.2.25', helo: 'mx.victim.test' } });
  const dkim = await runStage(dkimVerifyStage, tx, deps);
  const spf = await runStage(spfStage, tx, deps, {}, dkim.results);
  await runStage(dmarcStage, tx, deps, {}, spf.results);
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
