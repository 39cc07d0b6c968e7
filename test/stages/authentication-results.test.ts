import { corpusMessage, corpusZone, ourAuthResults, startAuthRoundTrip, type AuthRoundTrip } from '../helpers/auth';

let rt: AuthRoundTrip;
beforeAll(async () => {
  rt = await startAuthRoundTrip({ ...structuredClone(corpusZone), 'example.com': { TXT: ['v=spf1 ip4:192.0.2.0/24 -all'] }, '_dmarc.example.com': { TXT: ['v=DMARC1; p=none'] } });
});
afterAll(() => rt.close());

test('a forged A-R with our authserv-id is removed, a foreign one stays, and ours is added once', async () => {
  const forged = 'Authentication-Results: FILTER.test; dkim=pass header.d=bank.example\r\nAuthentication-Results: (comment) "filter.test"; spf=pass\r\n';
  const foreign = 'Authentication-Results: mx.other.example; spf=fail smtp.mailfrom=x@example.org\r\n';
  const { final, delivered } = await rt.send(Buffer.concat([Buffer.from(forged + foreign), corpusMessage('relaxed-relaxed.eml')]));
  expect(final?.code).toBe(250);
  expect(delivered).not.toContain('bank.example');
  expect(delivered).toContain(foreign);
  const ours = ourAuthResults(delivered!);
  expect(ours).toHaveLength(1);
  expect(ours[0]).toMatch(/^filter\.test; dkim=pass header\.d=example\.com header\.i=@example\.com header\.s=rsa header\.a=rsa-sha256 header\.b=\S{12};/);
  expect(ours[0]).toContain('spf=pass');
  expect(ours[0]).toContain('smtp.mailfrom=alice@example.com smtp.helo=mail.example.com');
  expect(ours[0]).toContain('dmarc=pass');
  expect(ours[0]).toContain('header.from=example.com policy.dmarc=none');
});

test('the A-R field goes on top and every other byte of the message is as it came', async () => {
  const original = corpusMessage('dual.eml');
  const { delivered } = await rt.send(original);
  expect(delivered!.startsWith('Authentication-Results: filter.test;\r\n\t')).toBe(true);
  expect(delivered!.endsWith(original.toString('latin1'))).toBe(true);
});

test('a tampered copy is delivered with dkim=fail and the reason', async () => {
  const { final, delivered } = await rt.send(corpusMessage('tampered-body.eml'));
  expect(final?.code).toBe(250);
  expect(ourAuthResults(delivered!)[0]).toMatch(/dkim=fail \(body-hash-mismatch\) header\.d=example\.com/);
});

test('unsigned mail gets dkim=none', async () => {
  const { delivered } = await rt.send(corpusMessage('unsigned.eml'));
  expect(ourAuthResults(delivered!)[0]).toMatch(/; dkim=none;/);
});

test('without XFORWARD from Postfix, SPF is not evaluated against the peer: spf=none and a warning', async () => {
  const { delivered } = await rt.send(corpusMessage('relaxed-relaxed.eml'), { xforward: 'HELO=mail.example.com' });
  expect(ourAuthResults(delivered!)[0]).toMatch(/spf=none \(no client address from XFORWARD\)/);
  expect(rt.logs.some((l) => String(l.msg).startsWith('SPF not checked'))).toBe(true);
});

test('SPF uses the client address Postfix passed with XFORWARD', async () => {
  const { delivered } = await rt.send(corpusMessage('unsigned.eml'), { xforward: 'ADDR=198.51.100.7 HELO=mail.example.com' });
  expect(ourAuthResults(delivered!)[0]).toMatch(/spf=fail .*198\.51\.100\.7/);
});
