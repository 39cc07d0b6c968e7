/**
 * dkim-verify: verifies every DKIM signature of the message (verify.ts) and records the
 * results for the dmarc and authentication-results stages.
 *
 * Findings, one per signature with "d= s= reason" as detail: DKIM_VERIFY_PASS, _FAIL,
 * _POLICY, _NEUTRAL, _PERMERROR, _TEMPERROR; DKIM_VERIFY_TESTING for any result of a t=y key;
 * DKIM_VERIFY_NONE for unsigned mail. DKIM_VERIFY_ADSP (opt-in, RFC 5617, reported only) and
 * DKIM_VERIFY_SIGNER_BANK when a listed signer's valid author signature switches the bank
 * (amavisd @author_to_policy_bank_maps). None of them changes the verdict by itself.
 * Reads: dkimVerify.*.
 */
import { ADSP_RESULT, DKIM_RESULTS, singleAuthor, trusted, type DkimSignatureResult } from '../../lib/authentication-results';
import type { Author } from '../../lib/author';
import { verifyDkim } from '../../lib/dkim/verify';
import { dkimVerifyBankSchema, type DkimVerifySettings } from '../../lib/dkim/verify-settings';
import type { DnsResolver } from '../../lib/dns';
import type { ResultEntry } from '../../lib/results';
import { defineStage, type Finding } from '../../pipeline/stage';

const FINDINGS = [
  'DKIM_VERIFY_NONE',
  'DKIM_VERIFY_PASS',
  'DKIM_VERIFY_FAIL',
  'DKIM_VERIFY_POLICY',
  'DKIM_VERIFY_NEUTRAL',
  'DKIM_VERIFY_PERMERROR',
  'DKIM_VERIFY_TEMPERROR',
  'DKIM_VERIFY_TESTING',
  'DKIM_VERIFY_SIGNER_BANK',
  'DKIM_VERIFY_ADSP',
] as const;
type DkimVerifyFinding = (typeof FINDINGS)[number];

const resultCodes: Record<DkimSignatureResult['result'], DkimVerifyFinding> = {
  pass: 'DKIM_VERIFY_PASS',
  fail: 'DKIM_VERIFY_FAIL',
  policy: 'DKIM_VERIFY_POLICY',
  neutral: 'DKIM_VERIFY_NEUTRAL',
  permerror: 'DKIM_VERIFY_PERMERROR',
  temperror: 'DKIM_VERIFY_TEMPERROR',
};

export const dkimVerifyStage = defineStage<DkimVerifySettings, DkimVerifyFinding>({
  id: 'dkim-verify',
  phase: 'check',
  after: ['loop-guard', 'header-sanity'],
  settings: { key: 'dkimVerify', schema: dkimVerifyBankSchema },
  findings: FINDINGS,
  create: (cfg, _bank, deps) => ({
    id: 'dkim-verify',
    async run(tx, signal) {
      const { resolver, dkimKeys } = deps;
      const { signatures } = await verifyDkim(tx.message, {
        resolver,
        keys: dkimKeys,
        maxSignatures: cfg.maxSignatures,
        minKeyBits: cfg.minKeyBits,
        partialBody: cfg.partialBody,
        signal,
      });
      const results: ResultEntry[] = [DKIM_RESULTS.entry(signatures)];
      const findings: Finding[] = signatures.map((s) => ({
        code: s.testing ? 'DKIM_VERIFY_TESTING' : resultCodes[s.result],
        detail: `d=${s.d} s=${s.s} ${s.result} ${s.reason}`,
      }));
      if (!signatures.length) findings.push({ code: 'DKIM_VERIFY_NONE' });
      const author = singleAuthor(tx.message);
      if (cfg.adsp && author) {
        const adspResult = { result: await adsp(author, signatures, resolver, signal), domain: author.domain };
        results.push(ADSP_RESULT.entry(adspResult));
        findings.push({ code: 'DKIM_VERIFY_ADSP', detail: `${author.domain} ${adspResult.result}` });
      }
      const switchTo = author && cfg.signerBanks.find((m) => signatures.some((s) => trusted(s) && sameDomain(s.d, m.signer) && within(author.domain, s.d)));
      if (!switchTo) return { findings, results };
      findings.push({ code: 'DKIM_VERIFY_SIGNER_BANK', detail: `${switchTo.signer} -> ${switchTo.bank}` });
      return { findings, results, bank: switchTo.bank };
    },
  }),
});

function sameDomain(a: string, b: string): boolean {
  return a.toLowerCase().replace(/\.$/, '') === b.toLowerCase().replace(/\.$/, '');
}

/** The author domain is the signing domain or below it (the signature speaks for the author). */
function within(authorDomain: string, d: string): boolean {
  const sd = d.toLowerCase().replace(/\.$/, '');
  return authorDomain === sd || authorDomain.endsWith(`.${sd}`);
}

/** RFC 5617 4.3: author domain existence, an author signature, then the ADSP record. */
async function adsp(author: Author, sigs: readonly DkimSignatureResult[], resolver: DnsResolver, signal: AbortSignal) {
  if (sigs.some((s) => trusted(s) && sameDomain(s.d, author.domain))) return 'pass' as const;
  const exists = await Promise.all((['A', 'AAAA', 'MX'] as const).map((t) => resolver.query(author.domain, t, signal)));
  if (exists.some((r) => r.kind === 'temperror')) return 'temperror' as const;
  if (exists.every((r) => r.kind === 'nxdomain')) return 'nxdomain' as const;
  const r = await resolver.query(`_adsp._domainkey.${author.domain}`, 'TXT', signal);
  if (r.kind === 'temperror') return 'temperror' as const;
  if (r.kind !== 'answer') return 'none' as const;
  const practice = /(?:^|;)\s*dkim\s*=\s*([a-z]+)/i.exec(r.records.map((t) => t.join('')).find((t) => /dkim\s*=/i.test(t)) ?? '')?.[1]?.toLowerCase();
  if (practice === 'all') return 'fail' as const;
  if (practice === 'discardable') return 'discard' as const;
  return practice === 'unknown' ? ('unknown' as const) : ('none' as const);
}
