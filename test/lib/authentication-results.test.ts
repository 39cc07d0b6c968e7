import { authservIdOf, formatAuthResults, pvalue, removeOwnAuthResults, resinfos } from '../../src/lib/authentication-results';
import { Message } from '../../src/transaction/message';
import { memorySpool } from '../../src/transaction/spool';

test.each([
  ['mx.example.org; dkim=pass', 'mx.example.org'],
  ['  (comment (nested)) mx.example.org 1; none', 'mx.example.org'],
  ['"mx.example.org"; spf=pass', 'mx.example.org'],
  ['mx.example.org;', 'mx.example.org'],
  ['', null],
])('the authserv-id of "%s" is %s', (value, id) => {
  expect(authservIdOf(value)).toBe(id);
});

test('only A-R fields with our authserv-id are removed, in any case and folding', () => {
  const raw =
    'Authentication-Results:\r\n MX.Example.org; dkim=pass\r\nAuthentication-Results: mx.example.org.evil; spf=pass\r\nX-Other: mx.example.org;\r\nFrom: a@example.org\r\n\r\nbody\r\n';
  const { message, removed } = removeOwnAuthResults(Message.parse(memorySpool(Buffer.from(raw))), 'mx.example.org');
  expect(removed).toBe(1);
  expect(message.headerBytes().toString()).toBe('Authentication-Results: mx.example.org.evil; spf=pass\r\nX-Other: mx.example.org;\r\nFrom: a@example.org\r\n\r\n');
});

test('an A-R field whose authserv-id has a trailing dot is ours too, and is removed', () => {
  const raw =
    'Authentication-Results: mx.example.org.; dmarc=pass\r\nAuthentication-Results: "MX.example.org.."; dkim=pass\r\nAuthentication-Results: mx.example.org.x; spf=pass\r\n\r\nbody\r\n';
  const { message, removed } = removeOwnAuthResults(Message.parse(memorySpool(Buffer.from(raw))), 'mx.example.org');
  expect(removed).toBe(2);
  expect(message.headerBytes().toString()).toBe('Authentication-Results: mx.example.org.x; spf=pass\r\n\r\n');
});

test('A-R fields with our authserv-id quoted with spaces, or with no readable authserv-id, are removed', () => {
  const raw =
    'Authentication-Results: " mx.example.org"; dmarc=pass\r\nAuthentication-Results: "mx.example.org "; dkim=pass\r\nAuthentication-Results: (c mx.example.org; spf=pass\r\nAuthentication-Results: other.example; spf=pass\r\n\r\nbody\r\n';
  const { message, removed } = removeOwnAuthResults(Message.parse(memorySpool(Buffer.from(raw))), 'mx.example.org');
  expect(removed).toBe(3);
  expect(message.headerBytes().toString()).toBe('Authentication-Results: other.example; spf=pass\r\n\r\n');
});

test('property values that are not tokens are quoted (RFC 8601 2.2)', () => {
  expect(pvalue('example.com')).toBe('example.com');
  expect(pvalue('user@example.com')).toBe('user@example.com');
  expect(pvalue('ab/cd+ef=')).toBe('"ab/cd+ef="');
  expect(pvalue('a "b"\r\n')).toBe('"a \\"b\\""');
});

test('the field lists one resinfo per line, and "none" when nothing was checked', () => {
  expect(formatAuthResults('mx.example.org', [])).toBe('mx.example.org; none');
  const infos = resinfos({
    dkim: [{ d: 'example.com', s: 'sel', a: 'rsa-sha256', b: 'abcdefghijklmnop', i: '@example.com', result: 'pass', reason: 'ok', testing: true }],
    spf: { result: 'softfail', domain: 'example.com', mailfrom: 'a@example.com', helo: 'h.example.com', comment: 'x (y)' },
    dmarc: { result: 'fail', from: 'example.com', policy: 'reject' },
    arc: { result: 'none', instance: 0 },
  });
  expect(formatAuthResults('mx.example.org', infos)).toBe(
    'mx.example.org;\r\n\tdkim=pass (test mode) header.d=example.com header.i=@example.com header.s=sel header.a=rsa-sha256 header.b=abcdefghijkl;\r\n' +
      '\tspf=softfail (x \\(y\\)) smtp.mailfrom=a@example.com smtp.helo=h.example.com;\r\n\tdmarc=fail header.from=example.com policy.dmarc=reject;\r\n\tarc=none',
  );
});
