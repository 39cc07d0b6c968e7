import type { DmarcResultRecord, DmarcResultStore } from '../../src/store/dmarc-results';
import { dmarcStage } from '../../src/stages/dmarc';
import { spfStage } from '../../src/stages/spf';
import { startDnsServer, type DnsServer } from '../helpers/dns-server';
import { runStage, testStageDeps, testTransaction } from '../helpers/stage-run';

let dns: DnsServer;
beforeAll(async () => {
  dns = await startDnsServer({
    'receiver.test': { TXT: ['v=spf1 ip4:192.0.2.25 -all'] },
    '_dmarc.receiver.test': { TXT: ['v=DMARC1; p=reject; rua=mailto:agg@receiver.test'] },
    '_dmarc.odd_name.test': { TXT: ['v=DMARC1; p=none; rua=mailto:agg@receiver.test'] },
  });
});
afterAll(() => dns.close());

async function recorded(message: string, addr: string): Promise<DmarcResultRecord[]> {
  const kept: DmarcResultRecord[] = [];
  const store: DmarcResultStore = { record: async (r) => void kept.push(r) };
  const deps = { ...testStageDeps(dns, { timeoutMs: 2000 }), dmarcStore: store };
  const tx = testTransaction(message, { mailFrom: 'dmarc-reports@receiver.test', client: { addr, helo: 'mx.receiver.test' } });
  const spf = await runStage(spfStage, tx, deps);
  await runStage(dmarcStage, tx, deps, {}, spf.results);
  return kept;
}

const report = 'From: dmarc-reports@receiver.test\r\nX-Postseal-Report: dmarc-aggregate\r\nSubject: Report Domain: a.test\r\n\r\nx\r\n';

describe('no report loops', () => {
  test('a DMARC report from a postseal that passes DMARC is not recorded for the next report', async () => {
    expect(await recorded(report, '192.0.2.25')).toEqual([]);
  });

  test('the marker on mail that fails DMARC does not hide it from the reports', async () => {
    const kept = await recorded(report, '198.51.100.66');
    expect(kept).toHaveLength(1);
    expect(kept[0]).toMatchObject({ policyDomain: 'receiver.test', result: 'fail', sourceIp: '198.51.100.66' });
  });

  test('ordinary mail that passes DMARC is recorded', async () => {
    expect(await recorded('From: someone@receiver.test\r\n\r\nx\r\n', '192.0.2.25')).toHaveLength(1);
  });

  test('a policy domain that is not a plain host name is not recorded (it would name the report file)', async () => {
    expect(await recorded('From: someone@odd_name.test\r\n\r\nx\r\n', '192.0.2.25')).toEqual([]);
  });
});
