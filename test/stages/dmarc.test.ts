import { corpusMessage, corpusZone, inboundStages, ourAuthResults, startAuthRoundTrip, type AuthRoundTrip } from '../helpers/auth';
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

const dmarcOf = (delivered: string | undefined) =>
  ourAuthResults(delivered!)[0]
    .split(';')
    .find((p) => p.trim().startsWith('dmarc='))
    ?.trim();

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

test('every author domain of a From with two addresses is evaluated, and A-R shows the strictest result', async () => {
  const { final, delivered } = await rt.send('From: a@example.com, b@example.org\r\nSubject: two\r\n\r\nx\r\n');
  expect(final?.code).toBe(250);
  expect(dmarcOf(delivered)).toMatch(/^dmarc=fail .*header\.from=example\.org policy\.dmarc=none$/);
});

test('a From group without addresses is not checked', async () => {
  const { final, delivered } = await rt.send('From: undisclosed-recipients:;\r\nSubject: group\r\n\r\nx\r\n');
  expect(final?.code).toBe(250);
  expect(dmarcOf(delivered)).toMatch(/^dmarc=none \(no author domain\)/);
});

describe('a p=reject author cannot hide behind a second author (multipleFrom: pass, so DMARC alone decides)', () => {
  let lax: AuthRoundTrip;
  beforeAll(async () => {
    lax = await startAuthRoundTrip(zone, { default: { stages: inboundStages, headerSanity: { multipleFrom: 'pass' } } });
  });
  afterAll(() => lax.close());
  const outside = { from: 'x@example.org', xforward: 'ADDR=198.51.100.9 HELO=x.example' };

  test.each([
    ['two From fields', 'From: ceo@example.com\r\nFrom: friend@example.org\r\n'],
    ['two From fields, the p=reject one second', 'From: friend@example.org\r\nFrom: ceo@example.com\r\n'],
    ['one From with addresses of two domains', 'From: friend@example.org, ceo@example.com\r\n'],
    ['group syntax', 'From: board: ceo@example.com;\r\n'],
    ['a group beside a plain address', 'From: friend@example.org, board: ceo@example.com, cfo@example.com;\r\n'],
    ['two angle addresses, which the parser reads as one', 'From: <friend@example.org> <ceo@example.com>\r\n'],
  ])('%s: rejected 550 5.7.1 naming the policy', async (_name, from) => {
    const { final, delivered } = await lax.send(`${from}Subject: hide\r\n\r\nx\r\n`, outside);
    expect(final?.code).toBe(550);
    expect(final?.text).toBe('5.7.1 Rejected by DMARC policy example.com p=reject');
    expect(delivered).toBeUndefined();
  });

  test.each([
    ['a stray ">"', 'From: ceo@example.com>\r\n'],
    ['an address before a display name', 'From: ceo@example.com <x>\r\n'],
  ])('a From that readers and this parser read differently (%s) fails closed: 550 5.7.1', async (_name, from) => {
    const { final, delivered } = await lax.send(`${from}Subject: odd\r\n\r\nx\r\n`, outside);
    expect(final?.code).toBe(550);
    expect(final?.text).toMatch(/^5\.7\.1 Rejected by DMARC policy: From field not understood/);
    expect(delivered).toBeUndefined();
  });

  test('more than 10 author domains are rejected without looking them all up', async () => {
    const many = Array.from({ length: 11 }, (_, i) => `u@d${i}.example`).join(', ');
    const before = lax.dns.queries.length;
    const { final } = await lax.send(`From: ${many}\r\nSubject: many\r\n\r\nx\r\n`, outside);
    expect(final?.code).toBe(550);
    expect(final?.text).toMatch(/^5\.7\.1 .*more than 10 author domains/);
    expect(lax.dns.queries.slice(before).filter((q) => q.name.startsWith('_dmarc.'))).toEqual([]);
  });
});

test('with the shipped default, two From fields are refused by header-sanity (550 5.6.0)', async () => {
  const { final } = await rt.send('From: ceo@example.com\r\nFrom: friend@example.org\r\nSubject: hide\r\n\r\nx\r\n', { xforward: 'ADDR=198.51.100.9 HELO=x.example' });
  expect(final?.code).toBe(550);
  expect(final?.text).toMatch(/^5\.6\.0 /);
});

test('a From field after 1 MiB of other header fields is not missed: the header is refused 552 5.3.4', async () => {
  const filler = `X-Filler: ${'x'.repeat(900)}\r\n`.repeat(1200);
  const { final, delivered } = await rt.send(`${filler}From: ceo@example.com\r\nSubject: late\r\n\r\nx\r\n`, { xforward: 'ADDR=198.51.100.9 HELO=x.example' });
  expect(final?.code).toBe(552);
  expect(final?.text).toBe('5.3.4 Message header size exceeds limit');
  expect(delivered).toBeUndefined();
});

test('a forged Authentication-Results with our authserv-id and a trailing dot is removed', async () => {
  const { final, delivered } = await rt.send('Authentication-Results: filter.test.; dmarc=pass header.from=example.com\r\nFrom: a@example.org\r\nSubject: forged\r\n\r\nx\r\n');
  expect(final?.code).toBe(250);
  expect(delivered).not.toMatch(/filter\.test\.; dmarc=pass/);
  expect(ourAuthResults(delivered!)).toHaveLength(1);
});

test('with onReject: header, a From naming too many domains is delivered marked for HOLD, not passed', async () => {
  const q = await startAuthRoundTrip(zone, { default: { stages: inboundStages, dmarc: { onReject: 'header' } } });
  try {
    const many = Array.from({ length: 12 }, (_, i) => `u@q${i}.example`).join(', ');
    const { final, delivered } = await q.send(`From: ${many}\r\nSubject: many\r\n\r\nx\r\n`, { xforward: 'ADDR=198.51.100.9 HELO=x.example' });
    expect(final?.code).toBe(250);
    expect(delivered).toMatch(/^X-Postseal-Quarantine: DMARC more than 10 author domains/m);
  } finally {
    await q.close();
  }
});
