/**
 * The DSN of a policy bounce, read back by a parser that is not ours (Python's email package,
 * which mail tools such as Mailman use to read DSNs): an RFC 6522 multipart/report with a
 * text part, an RFC 3464 message/delivery-status with the per-message and per-recipient
 * fields, and the original header section only.
 */
import { execFileSync } from 'node:child_process';
import { buildDsn, type DsnInput } from '../../src/notify/dsn';
import { replies } from '../../src/smtp/replies';

const PARSE = `
import email, json, sys
from email import policy
m = email.message_from_bytes(sys.stdin.buffer.read(), policy=policy.compat32)
parts = m.get_payload()
status = parts[1].get_payload()
print(json.dumps({
  "type": m.get_content_type(), "reportType": m.get_param("report-type"), "defects": [str(d) for d in m.defects],
  "from": m["From"], "to": m["To"], "autoSubmitted": m["Auto-Submitted"],
  "parts": [p.get_content_type() for p in parts],
  "text": parts[0].get_payload(),
  "status": [dict(block.items()) for block in status],
  "headers": parts[2].get_payload(decode=True).decode("latin-1"),
}))
`;

function parse(raw: Buffer) {
  return JSON.parse(execFileSync('python3', ['-c', PARSE], { input: raw }).toString());
}

const header = Buffer.from('Received: from mx.remote.test\r\nFrom: <bob@remote.test>\r\nSubject: invoice\r\nMessage-ID: <m1@remote.test>\r\n', 'latin1');
const input: DsnInput = {
  hostname: 'filter.example.test',
  sender: 'bob@remote.test',
  recipients: [{ address: 'user@example.test', notify: 'FAILURE', orcpt: 'rfc822;user+2Btag@example.test' }, { address: 'other@example.test' }],
  envid: 'env+2Bid',
  reply: replies.contentRejected,
  reason: 'BANNED_FILENAME',
  queueId: '4QID',
  arrivedAt: new Date('2026-12-07T10:00:00Z'),
  now: new Date('2026-12-07T10:00:01Z'),
  header,
};

it('is a multipart/report a foreign parser reads: text, delivery-status per recipient, the original header only', () => {
  const d = parse(buildDsn(input).raw);
  expect(d).toMatchObject({
    type: 'multipart/report',
    reportType: 'delivery-status',
    defects: [],
    from: 'Mail Delivery System <MAILER-DAEMON@filter.example.test>',
    to: '<bob@remote.test>',
    autoSubmitted: 'auto-replied',
    parts: ['text/plain', 'message/delivery-status', 'text/rfc822-headers'],
  });
  expect(d.text).toContain('<user@example.test>: 550 5.7.1 Message content rejected');
  expect(d.status).toEqual([
    { 'Reporting-MTA': 'dns; filter.example.test', 'X-Postfix-Queue-ID': '4QID', 'Original-Envelope-Id': 'env+2Bid', 'Arrival-Date': 'Mon, 07 Dec 2026 10:00:00 +0000' },
    {
      'Final-Recipient': 'rfc822; user@example.test',
      'Original-Recipient': 'rfc822; user+tag@example.test',
      Action: 'failed',
      Status: '5.7.1',
      'Diagnostic-Code': 'smtp; 550 5.7.1 Message content rejected',
    },
    { 'Final-Recipient': 'rfc822; other@example.test', Action: 'failed', Status: '5.7.1', 'Diagnostic-Code': 'smtp; 550 5.7.1 Message content rejected' },
  ]);
  expect(d.headers).toBe(header.toString('latin1'));
});

it('is 7-bit for an ASCII header and says 8bit (to be sent with BODY=8BITMIME) for a raw 8-bit one', () => {
  expect(buildDsn(input).eightBit).toBe(false);
  const eight = buildDsn({ ...input, header: Buffer.from('Subject: caf\xc3\xa9\r\n', 'latin1') });
  expect(eight.eightBit).toBe(true);
  expect(eight.raw.toString('latin1')).toMatch(/Content-Type: text\/rfc822-headers\r\nContent-Transfer-Encoding: 8bit\r\n\r\nSubject: caf\xc3\xa9\r\n/);
});

it('leaves out an ORCPT whose decoded address would break the field', () => {
  const d = parse(buildDsn({ ...input, recipients: [{ address: 'user@example.test', orcpt: 'rfc822;a+0D+0AX-Evil:+20yes@example.test' }] }).raw);
  expect(d.status[1]).not.toHaveProperty('Original-Recipient');
  expect(d.status[1]).not.toHaveProperty('X-Evil');
});

it('keeps the MIME boundary within 70 characters (RFC 2046) for a long host name', () => {
  const raw = buildDsn({ ...input, hostname: `${'h'.repeat(60)}.${'x'.repeat(60)}.example.test` }).raw.toString('latin1');
  const boundary = /boundary="([^"]+)"/.exec(raw)![1];
  expect(boundary.length).toBeLessThanOrEqual(70);
  expect(raw).toContain(`\r\n--${boundary}--\r\n`);
  expect(parse(Buffer.from(raw, 'latin1')).parts).toEqual(['text/plain', 'message/delivery-status', 'text/rfc822-headers']);
});
