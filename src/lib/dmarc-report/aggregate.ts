/**
 * DMARC aggregate reports (RFC 7489 7.2 and appendix C): the XML of one policy domain's
 * stored results for one period, gzip-compressed and named as 7.2.1.1 asks
 * (`receiver!policy-domain!begin!end.xml.gz`).
 *
 * Format: RFC 7489 appendix C (namespace http://dmarc.org/dmarc-xml/0.1, version 1.0);
 * nothing of DMARCbis is added. Rows group records by source IP, disposition, DMARC-aligned
 * DKIM/SPF results, header From, envelope From (the SPF domain) and the raw DKIM/SPF results.
 *
 * Alignment is judged from the stored domains against the header From (strict) or the policy
 * domain (relaxed: equal or a subdomain of it), as the stored record has no alignment flag.
 *
 * Fails: never throws on record content; unknown result words become the schema's nearest
 * ones (DKIM: neutral; SPF: temperror/permerror kept, others neutral).
 */
import { gzipSync } from 'node:zlib';
import { isIP } from 'node:net';
import type { PublishedPolicy } from './policy';

/** What a report needs of a stored DMARC result (store/dmarc-results.ts DmarcResultRecord fits). */
export interface DmarcResultRecord {
  readonly sourceIp?: string;
  readonly headerFrom: string;
  readonly disposition: 'none' | 'quarantine' | 'reject';
  readonly dkim: readonly { readonly domain: string; readonly selector: string; readonly result: string }[];
  readonly spf?: { readonly domain: string; readonly result: string };
}

export interface ReportMetadata {
  readonly orgName: string;
  readonly email: string;
  readonly extraContactInfo?: string;
  readonly reportId: string;
}

export interface AggregateReportInput {
  readonly meta: ReportMetadata;
  readonly policy: PublishedPolicy;
  /** Unix seconds, inclusive start and end of the period. */
  readonly begin: number;
  readonly end: number;
  readonly records: readonly DmarcResultRecord[];
}

export interface AggregateRow {
  readonly sourceIp: string;
  count: number;
  readonly disposition: 'none' | 'quarantine' | 'reject';
  readonly dkimAligned: 'pass' | 'fail';
  readonly spfAligned: 'pass' | 'fail';
  readonly headerFrom: string;
  readonly envelopeFrom: string;
  readonly dkim: readonly { domain: string; selector: string; result: string }[];
  readonly spf: { domain: string; result: string };
}

const dkimResults = new Set(['none', 'pass', 'fail', 'policy', 'neutral', 'temperror', 'permerror']);
const spfResults = new Set(['none', 'neutral', 'pass', 'fail', 'softfail', 'temperror', 'permerror']);

function aligned(domain: string, headerFrom: string, policyDomain: string, mode: 'r' | 's'): boolean {
  const d = domain.toLowerCase();
  const h = headerFrom.toLowerCase();
  if (d === h) return true;
  if (mode === 's') return false;
  return d === policyDomain || d.endsWith(`.${policyDomain}`);
}

/** Groups records into report rows (RFC 7489 7.2.1.1: one row per distinct result set). */
export function groupRows(records: readonly DmarcResultRecord[], policy: PublishedPolicy): AggregateRow[] {
  const rows = new Map<string, AggregateRow>();
  for (const r of records) {
    const dkim = r.dkim.map((d) => ({ domain: d.domain.toLowerCase(), selector: d.selector, result: dkimResults.has(d.result) ? d.result : 'neutral' }));
    const spf = r.spf ? { domain: r.spf.domain.toLowerCase(), result: spfResults.has(r.spf.result) ? r.spf.result : 'neutral' } : { domain: '', result: 'none' };
    const dkimAligned = dkim.some((d) => d.result === 'pass' && aligned(d.domain, r.headerFrom, policy.domain, policy.adkim)) ? 'pass' : 'fail';
    const spfAligned = spf.result === 'pass' && aligned(spf.domain, r.headerFrom, policy.domain, policy.aspf) ? 'pass' : 'fail';
    // The schema wants an address; a record without one (no XFORWARD) is reported as 0.0.0.0.
    const sourceIp = r.sourceIp && isIP(r.sourceIp) ? r.sourceIp : '0.0.0.0';
    const row = { sourceIp, count: 1, disposition: r.disposition, dkimAligned, spfAligned, headerFrom: r.headerFrom.toLowerCase(), envelopeFrom: spf.domain, dkim, spf } as const;
    const key = JSON.stringify({ ...row, count: 0 });
    const had = rows.get(key);
    if (had) had.count++;
    else rows.set(key, { ...row });
  }
  return [...rows.values()];
}

export function xmlEscape(s: string): string {
  // Characters XML 1.0 cannot carry at all are dropped rather than escaped.
  const clean = s.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, '');
  return clean.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

function el(name: string, value: string | number): string {
  return `<${name}>${xmlEscape(String(value))}</${name}>`;
}

/** The report's XML document. */
export function buildAggregateXml(input: AggregateReportInput): string {
  const { meta, policy } = input;
  const out: string[] = ['<?xml version="1.0" encoding="UTF-8"?>', '<feedback xmlns="http://dmarc.org/dmarc-xml/0.1">', '  <version>1.0</version>', '  <report_metadata>'];
  out.push(`    ${el('org_name', meta.orgName)}`, `    ${el('email', meta.email)}`);
  if (meta.extraContactInfo) out.push(`    ${el('extra_contact_info', meta.extraContactInfo)}`);
  out.push(`    ${el('report_id', meta.reportId)}`, `    <date_range>${el('begin', input.begin)}${el('end', input.end)}</date_range>`, '  </report_metadata>');
  out.push(
    '  <policy_published>',
    `    ${el('domain', policy.domain)}${el('adkim', policy.adkim)}${el('aspf', policy.aspf)}`,
    `    ${el('p', policy.p)}${el('sp', policy.sp)}${el('pct', policy.pct)}${el('fo', policy.fo)}`,
    '  </policy_published>',
  );
  for (const row of groupRows(input.records, policy)) {
    out.push('  <record>', '    <row>', `      ${el('source_ip', row.sourceIp)}${el('count', row.count)}`);
    out.push(`      <policy_evaluated>${el('disposition', row.disposition)}${el('dkim', row.dkimAligned)}${el('spf', row.spfAligned)}</policy_evaluated>`);
    out.push('    </row>', `    <identifiers>${el('envelope_from', row.envelopeFrom)}${el('header_from', row.headerFrom)}</identifiers>`, '    <auth_results>');
    for (const d of row.dkim) out.push(`      <dkim>${el('domain', d.domain)}${el('selector', d.selector)}${el('result', d.result)}</dkim>`);
    out.push(`      <spf>${el('domain', row.spf.domain)}${el('scope', 'mfrom')}${el('result', row.spf.result)}</spf>`, '    </auth_results>', '  </record>');
  }
  out.push('</feedback>', '');
  return out.join('\n');
}

/** RFC 7489 7.2.1.1: `receiver "!" policy-domain "!" begin-timestamp "!" end-timestamp ".xml.gz"`. */
export function reportFileName(receiver: string, policyDomain: string, begin: number, end: number): string {
  return `${receiver}!${policyDomain}!${begin}!${end}.xml.gz`;
}

export interface AggregateReport {
  readonly fileName: string;
  readonly xml: string;
  readonly gzip: Buffer;
  readonly messageCount: number;
}

/** XML, gzip and file name of one report; `receiver` is our domain (7.2.1.1). */
export function buildAggregateReport(receiver: string, input: AggregateReportInput): AggregateReport {
  const xml = buildAggregateXml(input);
  return {
    fileName: reportFileName(receiver, input.policy.domain, input.begin, input.end),
    xml,
    gzip: gzipSync(Buffer.from(xml, 'utf8')),
    messageCount: input.records.length,
  };
}
