/**
 * What dkim-verify adds beyond the verification itself: the signer-based bank switch
 * (amavisd @author_to_policy_bank_maps) and the opt-in ADSP report (RFC 5617).
 */
import { ADSP_RESULT, authOutcomes, resinfos } from '../../../src/lib/authentication-results';
import { dkimVerifyStage } from '../../../src/stages/dkim-verify';
import { corpusMessage, corpusZone, inboundStages, ourAuthResults, startAuthRoundTrip, type AuthRoundTrip } from '../../helpers/auth';
import { startDnsServer, type DnsServer } from '../../helpers/dns-server';
import { runStage, testStageDeps, testTransaction } from '../../helpers/stage-run';

describe('signer-based policy bank', () => {
  let rt: AuthRoundTrip;
  beforeAll(async () => {
    rt = await startAuthRoundTrip(structuredClone(corpusZone), {
      default: { stages: inboundStages, dkimVerify: { signerBanks: [{ signer: 'example.com', bank: 'WHITELISTED' }] } },
      // Trusted senders skip SPF: the switched run shows it by the missing spf= entry.
      WHITELISTED: { stages: ['dkim-verify', 'dmarc', 'authentication-results'] },
    });
  });
  afterAll(() => rt.close());

  test('mail with a valid author signature of a listed signer continues on the listed bank', async () => {
    const { final, delivered } = await rt.send(corpusMessage('relaxed-relaxed.eml'));
    expect(final?.code).toBe(250);
    const ar = ourAuthResults(delivered!)[0];
    expect(ar).toContain('dkim=pass header.d=example.com');
    expect(ar).not.toContain('spf=');
    const line = rt.logs.filter((l) => l.msg === 'message').pop() as { findings: string[] };
    expect(line.findings).toContain('DKIM_VERIFY_SIGNER_BANK(example.com -> WHITELISTED)');
  });

  test('a failing or test-mode signature of the same signer does not switch', async () => {
    for (const file of ['tampered-body.eml', 't-y.eml']) {
      const { delivered } = await rt.send(corpusMessage(file));
      expect(ourAuthResults(delivered!)[0]).toContain('spf=');
    }
  });
});

describe('ADSP (RFC 5617, reported only)', () => {
  let dns: DnsServer;
  beforeAll(async () => {
    dns = await startDnsServer({
      ...structuredClone(corpusZone),
      'example.com': { A: ['192.0.2.1'] },
      '_adsp._domainkey.example.com': { TXT: ['dkim=discardable'] },
      'example.org': { MX: [[10, 'mx.example.org']] },
    });
  });
  afterAll(() => dns.close());

  const adsp = async (data: Buffer | string) => {
    const { outcome, results } = await runStage(dkimVerifyStage, testTransaction(data), testStageDeps(dns), { dkimVerify: { adsp: true } });
    const recorded = authOutcomes(results);
    return { adsp: recorded.adsp, entry: resinfos(recorded).find((r) => r.startsWith('dkim-adsp=')), findings: outcome.findings.map((f) => f.code) };
  };

  test.each([
    ['an author signature passes', 'pass', 'example.com', corpusMessage('relaxed-relaxed.eml')],
    ['unsigned mail of a discardable domain', 'discard', 'example.com', corpusMessage('unsigned.eml')],
    ['a domain without an ADSP record', 'none', 'example.org', 'From: a@example.org\r\n\r\nx\r\n'],
    ['an author domain that does not exist', 'nxdomain', 'ghost.example', 'From: a@ghost.example\r\n\r\nx\r\n'],
  ])('%s: dkim-adsp=%s header.from=%s', async (_name, result, domain, data) => {
    const r = await adsp(data);
    expect(r.adsp).toEqual({ result, domain });
    expect(r.entry).toBe(`dkim-adsp=${result} header.from=${domain}`);
    expect(r.findings).toContain('DKIM_VERIFY_ADSP');
  });

  test('off by default', async () => {
    const { results } = await runStage(dkimVerifyStage, testTransaction(corpusMessage('unsigned.eml')), testStageDeps(dns));
    expect(results.get(ADSP_RESULT)).toBeUndefined();
  });
});
