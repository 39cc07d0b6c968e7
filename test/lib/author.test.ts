import { authorDomains } from '../../src/lib/author';
import { Message } from '../../src/transaction/message';
import { memorySpool } from '../../src/transaction/spool';

const message = (header: string) => Message.parse(memorySpool(Buffer.from(`${header}\r\n\r\nbody\r\n`, 'utf8')));

describe('author domains', () => {
  it('stops after limit + 1 distinct domains, however many the field names', () => {
    const from = `From: ${Array.from({ length: 600 }, (_, i) => `u@d${i}.example`).join(', ')}`;
    const r = authorDomains(message(from), 10);
    expect(r.domains).toHaveLength(11);
    expect(r.unparseable).toBeNull();
  });

  it('does not parse a From field longer than 16 KiB: it is unparseable', () => {
    expect(authorDomains(message(`From: ${'x'.repeat(17000)}@example.com`), 10).unparseable).toMatch(/^From field of \d+ bytes$/);
  });

  it('counts every <address> outside quotes and comments, and ignores addresses inside them', () => {
    expect(authorDomains(message('From: "ceo@paypal.example" <a@example.org> (see b@c.example)'), 10)).toEqual({ domains: ['example.org'], unparseable: null });
    expect(authorDomains(message('From: <a@example.org> <ceo@paypal.example>'), 10).domains).toEqual(expect.arrayContaining(['example.org', 'paypal.example']));
  });

  it('reads a group without members as no author, and a group with members as theirs', () => {
    expect(authorDomains(message('From: undisclosed-recipients:;'), 10)).toEqual({ domains: [], unparseable: null });
    expect(authorDomains(message('From: board: ceo@example.com;'), 10).domains).toEqual(['example.com']);
  });

  it('calls an "@" that yields an address without a domain unparseable', () => {
    expect(authorDomains(message('From: ceo@example.com>'), 10).unparseable).toMatch(/not understood/);
    expect(authorDomains(message('From: ceo@example.com <x>'), 10).unparseable).toMatch(/not understood/);
  });
});
