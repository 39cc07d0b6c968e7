import { corpusMessage, corpusZone, ourAuthResults, startAuthRoundTrip, type AuthRoundTrip } from '../helpers/auth';
import type { Zone } from '../helpers/dns-server';

const unsigned = (from: string, subject = 'dmarc') => `From: ${from}\r\nTo: bob@example.net\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@test>\r\n\r\nHello\r\n`;

const zone: Zone = {
  ...structuredClone(corpusZone),
  'example.com': { TXT: ['v=spf1 ip4:192.0.2.0/24 -all'], A: ['192.0.2.1'] },
  '_dmarc.example.com': { TXT: ['v=DMARC1; p=reject; sp=quarantine; np=reject'] },
  'sub.example.com': { A: ['192.0.2.2'], TXT: ['v=spf1 ip4:192.0.2.0/24 -all'] },
  'example.net': { TXT: ['v=spf1 ip4:203.0.113.0/24 -all'] },
  '_dmarc.example.net': { CNAME: 'dmarc.provider.example' },
  'dmarc.provider.example': { TXT: ['v=DMARC1; p=reject; aspf=s'] },
  'lists.example.net': { TXT: ['v=spf1 ip4:203.0.113.0/24 -all'] },
  'example.org': { TXT: ['v=spf1 ip4:198.51.100.0/24 -all'] },
  '_dmarc.example.org': { TXT: ['v=DMARC1; p=none'] },
};

let rt: AuthRoundTrip;
beforeAll(async () => {
  rt = await startAuthRoundTrip(zone);
});
afterAll(() => rt.close());

const dmarcOf = (delivered: string | undefined) => ourAuthResults(delivered!)[0].split(';').find((p) => p.trim().startsWith('dmarc='))?.trim();

test('an aligned DKIM signature passes DMARC even when SPF fails', async () => {
  const { final, delivered } = await rt.send(corpusMessage('relaxed-relaxed.eml'), { xforward: 'ADDR=198.51.100.9 HELO=x.example' });
  expect(final?.code).toBe(250);
  expect(dmarcOf(delivered)).toMatch(/^dmarc=pass .*header\.from=example\.com policy\.dmarc=reject$/);
});

test('an aligned SPF pass passes DMARC for unsigned mail', async () => {
  const { final, delivered } = await rt.send(unsigned('alice@example.com', 'spf-aligned'));
  expect(final?.code).toBe(250);
  expect(dmarcOf(delivered)).toMatch(/^dmarc=pass/);
});

test('SPF that passes for an unaligned MAIL FROM domain does not satisfy p=reject: 550 5.7.1 naming the policy', async () => {
  const { final, delivered } = await rt.send(unsigned('alice@example.com', 'spf-unaligned'), { from: 'bounce@example.org', xforward: 'ADDR=198.51.100.9 HELO=x.example' });
  expect(final?.code).toBe(550);
  expect(final?.text).toBe('5.7.1 Rejected by DMARC policy example.com p=reject');
  expect(delivered).toBeUndefined();
});

test('a DKIM signature of another domain is not aligned: p=reject rejects', async () => {
  const { final } = await rt.send(corpusMessage('wrong-d.eml'), { xforward: 'ADDR=198.51.100.9 HELO=x.example' });
  expect(final?.code).toBe(550);
});

test('a subdomain takes sp= (quarantine), which the default bank only tags', async () => {
  const { final, delivered } = await rt.send(unsigned('carol@sub.example.com', 'sp'), { from: 'carol@sub.example.com', xforward: 'ADDR=198.51.100.9 HELO=x.example' });
  expect(final?.code).toBe(250);
  expect(dmarcOf(delivered)).toMatch(/^dmarc=fail .*header\.from=sub\.example\.com policy\.dmarc=quarantine$/);
});

test('a subdomain that does not exist takes np= (reject)', async () => {
  const { final } = await rt.send(unsigned('dave@ghost.example.com', 'np'), { from: 'dave@ghost.example.com', xforward: 'ADDR=198.51.100.9 HELO=x.example' });
  expect(final?.code).toBe(550);
  expect(final?.text).toMatch(/p=reject/);
});

test('a _dmarc record behind a CNAME is found, and its strict SPF alignment applies', async () => {
  const relaxedOnly = await rt.send(unsigned('erin@example.net', 'cname'), { from: 'bounce@lists.example.net', xforward: 'ADDR=203.0.113.5 HELO=x.example' });
  expect(relaxedOnly.final?.code).toBe(550);
  const exact = await rt.send(unsigned('erin@example.net', 'cname2'), { from: 'erin@example.net', xforward: 'ADDR=203.0.113.5 HELO=x.example' });
  expect(exact.final?.code).toBe(250);
  expect(dmarcOf(exact.delivered)).toMatch(/^dmarc=pass .*policy\.dmarc=reject$/);
});

test('p=none fails are delivered with dmarc=fail', async () => {
  const { final, delivered } = await rt.send(unsigned('frank@example.org', 'none'), { from: 'frank@example.org', xforward: 'ADDR=192.0.2.200 HELO=x.example' });
  expect(final?.code).toBe(250);
  expect(dmarcOf(delivered)).toMatch(/^dmarc=fail .*policy\.dmarc=none$/);
});

test('a DNS timeout that leaves DKIM undecided under p=reject is 451 4.7.0, not a reject', async () => {
  // A selector no earlier test has put in the resolver's cache.
  rt.dns.zone['weak._domainkey.example.com'] = { behaviour: 'timeout' };
  try {
    const { final, delivered } = await rt.send(corpusMessage('weak-key.eml'), { xforward: 'ADDR=198.51.100.9 HELO=x.example' });
    expect(final?.code).toBe(451);
    expect(final?.text).toMatch(/^4\.7\.0 DMARC check could not complete, try again later \(example\.com p=reject\)$/);
    expect(delivered).toBeUndefined();
  } finally {
    rt.dns.zone['weak._domainkey.example.com'] = corpusZone['weak._domainkey.example.com'];
  }
});

test('mail without a single From domain is not checked', async () => {
  const { final, delivered } = await rt.send('From: a@example.com, b@example.org\r\nSubject: two\r\n\r\nx\r\n', { xforward: 'ADDR=198.51.100.9 HELO=x.example' });
  expect(final?.code).toBe(250);
  expect(dmarcOf(delivered)).toMatch(/^dmarc=none \(no single author domain\)/);
});
