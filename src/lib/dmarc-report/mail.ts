/**
 * The mail that carries one aggregate report (RFC 7489 7.2.1.1): Subject
 * "Report Domain: <policy domain> Submitter: <receiver> Report-ID: <id>", a short text part
 * and the gzip file as an attachment (application/gzip, base64, named as aggregate.ts says),
 * in a multipart/report (RFC 6522) with report-type "dmarc-aggregate" — there is no
 * registered report-type for DMARC aggregate reports; receivers read the attachment.
 *
 * The message carries `Auto-Submitted: auto-generated` (RFC 3834) and `X-Postseal-Report:
 * dmarc-aggregate`, so that the report is recognised as ours (no loops, docs/dmarc-reports.md).
 *
 * Fails: never; addresses and ids come from configuration and DNS, so header values are
 * stripped of CR/LF before they are written.
 */
import { randomBytes } from 'node:crypto';

export interface ReportMailInput {
  readonly from: string;
  readonly to: readonly string[];
  readonly policyDomain: string;
  /** Our domain (the report's Submitter). */
  readonly submitter: string;
  readonly reportId: string;
  readonly begin: number;
  readonly end: number;
  readonly fileName: string;
  readonly gzip: Buffer;
  readonly date: Date;
}

export const REPORT_MARKER_FIELD = 'X-Postseal-Report';

const oneLine = (s: string) => s.replace(/[\r\n]+/g, ' ');

/** RFC 2045 base64 in lines of 76. */
function base64Lines(b: Buffer): string {
  return (b.toString('base64').match(/.{1,76}/g) ?? []).join('\r\n');
}

/** The message, CRLF line ends, ready for DATA. */
export function composeReportMail(m: ReportMailInput): Buffer {
  const boundary = `=_dmarc_${randomBytes(12).toString('hex')}`;
  const idDomain = m.from.slice(m.from.lastIndexOf('@') + 1) || m.submitter;
  const text = [
    `This is a DMARC aggregate report (RFC 7489) from ${m.submitter} for ${m.policyDomain},`,
    `covering ${new Date(m.begin * 1000).toISOString()} to ${new Date(m.end * 1000).toISOString()}.`,
    'The report is the attached gzip-compressed XML file.',
  ].join('\r\n');
  const lines = [
    `From: ${oneLine(m.from)}`,
    `To: ${m.to.map(oneLine).join(', ')}`,
    `Subject: Report Domain: ${oneLine(m.policyDomain)} Submitter: ${oneLine(m.submitter)} Report-ID: <${oneLine(m.reportId)}>`,
    `Date: ${m.date.toUTCString().replace('GMT', '+0000')}`,
    `Message-ID: <${randomBytes(16).toString('hex')}@${oneLine(idDomain)}>`,
    'MIME-Version: 1.0',
    'Auto-Submitted: auto-generated',
    `${REPORT_MARKER_FIELD}: dmarc-aggregate`,
    `Content-Type: multipart/report; report-type="dmarc-aggregate"; boundary="${boundary}"`,
    '',
    'This is a MIME-formatted message.',
    `--${boundary}`,
    'Content-Type: text/plain; charset=us-ascii',
    'Content-Transfer-Encoding: 7bit',
    '',
    text,
    `--${boundary}`,
    `Content-Type: application/gzip; name="${m.fileName}"`,
    'Content-Transfer-Encoding: base64',
    `Content-Disposition: attachment; filename="${m.fileName}"`,
    '',
    base64Lines(m.gzip),
    `--${boundary}--`,
    '',
  ];
  return Buffer.from(lines.join('\r\n'), 'utf8');
}
