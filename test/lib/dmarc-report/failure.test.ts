/**
 * DMARC failure reports (src/lib/dmarc-report/failure.ts): which results fo= asks about, the
 * copied header section (cut, redacted), and the AFRF mail read back by mailparser.
 */
import { simpleParser, type Attachment } from 'mailparser';
import { composeFailureReport, failureToReport, foOptions, redact, reportHeaders, type FailureFacts, type FailureReportInput } from '../../../src/lib/dmarc-report/failure';

const facts = (over: Partial<FailureFacts> = {}): FailureFacts => ({
  dkimAligned: false,
  spfAligned: false,
  dkim: [],
  spf: { domain: 'a.test', result: 'pass' },
  ...over,
});

describe('fo= options', () => {
  const allFailed = facts({ dkim: [{ domain: 'a.test', selector: 's', result: 'fail' }], spf: { domain: 'other.test', result: 'fail' } });
  const spfOnly = facts({ spfAligned: true, dkim: [{ domain: 'a.test', selector: 's', result: 'fail' }] });
  const bothAligned = facts({ dkimAligned: true, spfAligned: true, dkim: [{ domain: 'a.test', selector: 's', result: 'pass' }] });
  const unalignedPasses = facts({ dkimAligned: true, dkim: [{ domain: 'a.test', selector: 's', result: 'pass' }], spf: { domain: 'esp.test', result: 'pass' } });
  const failedButAligned = facts({
    dkimAligned: true,
    spfAligned: true,
    dkim: [
      { domain: 'a.test', selector: 's', result: 'pass' },
      { domain: 'esp.test', selector: 'x', result: 'fail' },
    ],
  });
  const softfail = facts({ dkimAligned: true, dkim: [{ domain: 'a.test', selector: 's', result: 'pass' }], spf: { domain: 'a.test', result: 'softfail' } });

  test.each([
    ['0', 'nothing aligned, DKIM and SPF failed', 'dmarc', allFailed],
    ['0', 'only SPF aligned, DKIM failed', null, spfOnly],
    ['0', 'DKIM aligned, SPF passed unaligned', null, unalignedPasses],
    ['1', 'nothing aligned, DKIM and SPF failed', 'dmarc', allFailed],
    ['1', 'only SPF aligned, DKIM failed', 'dmarc', spfOnly],
    ['1', 'DKIM aligned, SPF passed unaligned', 'dmarc', unalignedPasses],
    ['1', 'both aligned', null, bothAligned],
    ['d', 'only SPF aligned, DKIM failed', 'signature', spfOnly],
    ['d', 'both aligned, a second DKIM signature failed', 'signature', failedButAligned],
    ['d', 'both aligned', null, bothAligned],
    ['d', 'DKIM aligned, SPF softfail', null, softfail],
    ['s', 'DKIM aligned, SPF softfail', 'spf', softfail],
    ['s', 'nothing aligned, DKIM and SPF failed', 'spf', allFailed],
    ['s', 'only SPF aligned, DKIM failed', null, spfOnly],
    ['d:s', 'DKIM aligned, SPF softfail', 'spf', softfail],
    ['0:d', 'only SPF aligned, DKIM failed', 'signature', spfOnly],
    ['1:d', 'both aligned, a second DKIM signature failed', 'signature', failedButAligned],
    ['x', 'nothing aligned, DKIM and SPF failed', 'dmarc', allFailed],
    ['', 'DKIM aligned, SPF passed unaligned', null, unalignedPasses],
  ] as const)('fo=%s, %s: reports %s', (fo, _what, expected, f) => {
    expect(failureToReport(fo, f)).toBe(expected);
  });

  test('unknown options are ignored and an empty list means 0', () => {
    expect([...foOptions(' 1 : D :zz')]).toEqual(['1', 'd']);
    expect([...foOptions('zz')]).toEqual(['0']);
  });
});

const header = Buffer.from(
  [
    'Received: from mx.sender.test (mx.sender.test [198.51.100.7])\r\n\tby mx.receiver.test with ESMTP id 4Q for <carol.user@receiver.test>; Mon, 7 Dec 2026 05:00:00 +0000\r\n',
    'From: Alice <alice@a.test>\r\n',
    'To: "Carol U." <carol.user@receiver.test>, dave@sub.a.test\r\n',
    'Message-ID: <abc.123@mail.a.test>\r\n',
    'Subject: hello\r\n',
    '\r\n',
  ].join(''),
);

describe('the copied header section', () => {
  test("redaction replaces local parts outside the reported domain and keeps the domain's own addresses and message ids", () => {
    const out = reportHeaders(header, { maxBytes: 65536, redact: true, keepDomain: 'a.test' }).toString('latin1');
    expect(out).toContain('for <redacted@receiver.test>;');
    expect(out).toContain('From: Alice <alice@a.test>\r\n');
    expect(out).toContain('To: "Carol U." <redacted@receiver.test>, dave@sub.a.test\r\n');
    expect(out).toContain('Message-ID: <abc.123@mail.a.test>\r\n');
    expect(out).not.toContain('carol');
    expect(out.endsWith('Subject: hello\r\n')).toBe(true);
  });

  test('quoted local parts and addresses before a full stop are redacted too', () => {
    const h = Buffer.from('Reply-To: "carol user"@receiver.test\r\nComments: write to carol@receiver.test.\r\n\r\n');
    expect(reportHeaders(h, { maxBytes: 65536, redact: true, keepDomain: 'a.test' }).toString()).toBe(
      'Reply-To: redacted@receiver.test\r\nComments: write to redacted@receiver.test.\r\n',
    );
  });

  test('redaction fails closed: encoded words, 8-bit domains and address literals do not carry a local part out', () => {
    const h = Buffer.from(
      [
        'To: =?UTF-8?Q?alice=40ours.test?= <alice@ours.test>',
        'Cc: "Bob Smith" <bob@b\u00fccher.test>',
        'X-Orig: carol@[192.0.2.1]',
        'Delivered-To: dave@ours.test',
        'From: x@example.com',
        '',
        '',
      ].join('\r\n'),
      'latin1',
    );
    const out = reportHeaders(h, { maxBytes: 65536, redact: true, keepDomain: 'example.com' }).toString('latin1');
    for (const who of ['alice', 'bob', 'carol', 'dave']) expect(out).not.toContain(who);
    expect(out).toContain('To: =?us-ascii?Q?redacted?= <redacted@ours.test>\r\n');
    expect(out).toContain('From: x@example.com\r\n');
    // An encoded word without an outside address stays.
    const kept = Buffer.from('Subject: =?UTF-8?B?aGVsbG8gd29ybGQ=?=\r\nX-Ok: =?UTF-8?Q?me=40example.com?=\r\n\r\n');
    expect(reportHeaders(kept, { maxBytes: 65536, redact: true, keepDomain: 'example.com' }).toString()).toBe(kept.toString().replace(/\r\n\r\n$/, '\r\n'));
  });

  test("redact keeps an Authentication-Results property's name and hides a VERP sender's recipient", () => {
    expect(redact('r.test; spf=pass smtp.mailfrom=list-bounces+alice=ours.test@lists.example.org', 'example.com')).toBe(
      'r.test; spf=pass smtp.mailfrom=redacted@lists.example.org',
    );
    expect(redact('list-bounces+alice=ours.test@lists.example.org', 'example.com')).toBe('redacted@lists.example.org');
    expect(redact('bounce@mail.example.com', 'example.com')).toBe('bounce@mail.example.com');
  });

  test('a megabyte of hostile address-like header text is redacted quickly', () => {
    for (const p of [`"${'a'.repeat(250)}"`, `a@${'b'.repeat(1000)}`, `"x"@${'a.'.repeat(200)}`, 'a@b.'.repeat(50), '@'.repeat(500), `=?UTF-8?Q?${'a=40'.repeat(200)}?=`]) {
      const line = `Subject: ${`${p} `.repeat(Math.floor(900 / (p.length + 1)) || 1)}`;
      const h = Buffer.from(`${`${line}\r\n`.repeat(Math.floor(1048576 / (line.length + 2)))}\r\n`, 'latin1');
      const started = Date.now();
      reportHeaders(h, { maxBytes: 1048576, redact: true, keepDomain: 'example.com' });
      expect(Date.now() - started).toBeLessThan(2000);
    }
  });

  test('a 60 kB field of letters without an address is redacted in linear time', () => {
    const started = Date.now();
    const long = Buffer.from(`Subject: ${'a.'.repeat(30000)}\r\nX: ${'b'.repeat(60000)}\r\n\r\n`);
    // A whole-address regular expression took 10 s and 7.8 s on these (quadratic backtracking).
    expect(reportHeaders(long, { maxBytes: 200000, redact: true, keepDomain: 'a.test' }).length).toBe(long.length - 2);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  test('without redaction the fields are copied as received', () => {
    expect(reportHeaders(header, { maxBytes: 65536, redact: false, keepDomain: 'a.test' }).toString('latin1')).toBe(header.toString('latin1').replace(/\r\n\r\n$/, '\r\n'));
  });

  test('a header section over maxBytes is cut after the last whole field that fits', () => {
    const out = reportHeaders(header, { maxBytes: 200, redact: false, keepDomain: 'a.test' }).toString('latin1');
    expect(out).toMatch(/^Received: [\s\S]*\r\nFrom: Alice <alice@a\.test>\r\n$/);
  });
});

const input = (over: Partial<FailureReportInput> = {}): FailureReportInput => ({
  from: 'dmarc-reports@receiver.test',
  to: ['ruf@a.test', 'forensic@reports.test'],
  submitter: 'receiver.test',
  date: new Date('2026-12-07T06:00:00Z'),
  userAgent: 'postseal',
  reportedDomain: 'a.test',
  policyDomain: 'a.test',
  authFailure: 'dmarc',
  facts: facts({ dkim: [{ domain: 'a.test', selector: 'sel1', result: 'fail' }], spf: { domain: 'evil.test', result: 'fail' } }),
  mailFrom: 'bounce@evil.test',
  arrivalDate: new Date('2026-12-07T05:00:00Z'),
  sourceIp: '198.51.100.7',
  authResults: 'filter.test;\r\n\tdkim=fail header.d=a.test header.s=sel1;\r\n\tspf=fail smtp.mailfrom=bounce@evil.test;\r\n\tdmarc=fail header.from=a.test policy.dmarc=reject',
  deliveryResult: 'reject',
  spfDns: ['txt : evil.test : v=spf1 -all'],
  headers: reportHeaders(header, { maxBytes: 65536, redact: true, keepDomain: 'a.test' }),
  ...over,
});

/** The fields of the message/feedback-report part, unfolded, in order. */
function feedbackFields(part: Attachment): [string, string][] {
  return part.content
    .toString('latin1')
    .replace(/\r\n[ \t]+/g, ' ')
    .split('\r\n')
    .filter(Boolean)
    .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]);
}

describe('the failure report mail', () => {
  test('is a multipart/report feedback-report with a text part, every AFRF field and the header section', async () => {
    const raw = composeFailureReport(input());
    expect(raw.toString('latin1')).not.toMatch(/[^\r]\n|\r[^\n]/);
    const mail = await simpleParser(raw);
    expect(mail.headers.get('content-type')).toMatchObject({ value: 'multipart/report', params: { 'report-type': 'feedback-report' } });
    expect(mail.from?.text).toBe('dmarc-reports@receiver.test');
    expect((Array.isArray(mail.to) ? mail.to : [mail.to]).flatMap((a) => a?.value.map((v) => v.address))).toEqual(['ruf@a.test', 'forensic@reports.test']);
    expect(mail.subject).toBe('DMARC failure report for a.test from 198.51.100.7');
    expect(mail.headers.get('auto-submitted')).toBe('auto-generated');
    expect(mail.headers.get('x-postseal-report')).toBe('dmarc-failure');
    expect(mail.text).toContain('DMARC failure report (RFC 7489 7.3, RFC 6591) from receiver.test');
    const [feedback, headers] = mail.attachments;
    expect(feedback.contentType).toBe('message/feedback-report');
    expect(feedbackFields(feedback)).toEqual([
      ['Feedback-Type', 'auth-failure'],
      ['User-Agent', 'postseal'],
      ['Version', '1'],
      ['Original-Mail-From', '<bounce@evil.test>'],
      ['Arrival-Date', 'Mon, 07 Dec 2026 05:00:00 +0000'],
      ['Source-IP', '198.51.100.7'],
      ['Reported-Domain', 'a.test'],
      [
        'Authentication-Results',
        'filter.test; dkim=fail header.d=a.test header.s=sel1; spf=fail smtp.mailfrom=bounce@evil.test; dmarc=fail header.from=a.test policy.dmarc=reject',
      ],
      ['Auth-Failure', 'dmarc'],
      ['Identity-Alignment', 'none'],
      ['Delivery-Result', 'reject'],
      ['DKIM-Domain', 'a.test'],
      ['DKIM-Selector', 'sel1'],
      ['SPF-DNS', 'txt : evil.test : v=spf1 -all'],
    ]);
    expect(headers.contentType).toBe('text/rfc822-headers');
    const copied = headers.content.toString('latin1');
    expect(copied).toContain('From: Alice <alice@a.test>');
    expect(copied).toContain('<redacted@receiver.test>');
    expect(copied).not.toContain('hello\r\n\r\n');
  });

  test('an SPF failure report carries SPF-DNS and no DKIM fields; a signature report the reverse', async () => {
    const spf = await simpleParser(composeFailureReport(input({ authFailure: 'spf' })));
    const spfFields = feedbackFields(spf.attachments[0]).map(([n]) => n);
    expect(spfFields).toContain('SPF-DNS');
    expect(spfFields).not.toContain('DKIM-Domain');
    const sig = await simpleParser(composeFailureReport(input({ authFailure: 'signature' })));
    const sigFields = feedbackFields(sig.attachments[0]);
    expect(sigFields).toContainEqual(['Auth-Failure', 'signature']);
    expect(sigFields.map(([n]) => n)).not.toContain('SPF-DNS');
  });

  test('no line of the report is over 998 octets, whatever the lengths of a selector, an envelope sender or an SPF record', async () => {
    const long = 'x'.repeat(3000);
    const raw = composeFailureReport(
      input({
        mailFrom: `${long}@evil.test`,
        facts: facts({ dkim: [{ domain: 'a.test', selector: long, result: 'fail' }], spf: { domain: 'evil.test', result: 'fail' } }),
        authResults: `filter.test; dkim=fail header.d=a.test header.s=${long}; spf=fail smtp.mailfrom=${long}@evil.test`,
        spfDns: [`txt : evil.test : v=spf1 ${Array.from({ length: 200 }, (_, i) => `ip4:192.0.2.${i}`).join(' ')} -all`],
      }),
    );
    expect(
      raw
        .toString('latin1')
        .split('\r\n')
        .filter((l) => l.length > 998),
    ).toEqual([]);
    const fields = feedbackFields((await simpleParser(raw)).attachments[0]);
    // Folded where it has white space (the SPF record whole), cut where it has none.
    expect(fields).toContainEqual(['SPF-DNS', `txt : evil.test : v=spf1 ${Array.from({ length: 200 }, (_, i) => `ip4:192.0.2.${i}`).join(' ')} -all`]);
    expect(fields.find(([n]) => n === 'DKIM-Selector')?.[1]).toMatch(/^x{900,998}$/);
  });

  test('header data with 8-bit bytes or CR/LF in envelope values cannot break the report', async () => {
    const eight = Buffer.from('From: =?utf-8?q?x?= <alice@a.test>\r\nSubject: caf\xe9\r\n', 'latin1');
    const raw = composeFailureReport(input({ headers: eight, mailFrom: 'x@evil.test\r\nBcc: victim@x.test', sourceIp: undefined }));
    const mail = await simpleParser(raw);
    expect(mail.headers.get('bcc')).toBeUndefined();
    const [feedback, headers] = mail.attachments;
    expect(feedbackFields(feedback)).toContainEqual(['Original-Mail-From', '<x@evil.test Bcc: victim@x.test>']);
    expect(feedbackFields(feedback).map(([n]) => n)).not.toContain('Source-IP');
    expect(raw.toString('latin1')).toContain('Content-Transfer-Encoding: base64');
    expect(headers.content.equals(eight)).toBe(true);
  });
});
