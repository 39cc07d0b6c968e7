import { coversAllRecipients, destinyDecision, destinySchema, matchesRecipient } from '../../src/pipeline/destiny';
import { replies } from '../../src/smtp/replies';
import { loadTestBank } from '../helpers/banks';

const tx = (...addresses: string[]) => ({ envelope: { mailFrom: 'a@b', smtputf8: false, recipients: addresses.map((address) => ({ address })) } });

describe('recipient lookups, amavisd style', () => {
  it('matches a full address, case-insensitively, and its +extension', () => {
    const list = ['Bob@Example.ORG'];
    expect(matchesRecipient(list, 'bob@example.org')).toBe(true);
    expect(matchesRecipient(list, 'BOB+spam@EXAMPLE.org')).toBe(true);
    expect(matchesRecipient(list, 'bobby@example.org')).toBe(false);
    expect(matchesRecipient(list, 'bob@example.org.evil')).toBe(false);
  });

  it('matches a local part at any domain with "user@"', () => {
    expect(matchesRecipient(['postmaster@'], 'postmaster@a.example')).toBe(true);
    expect(matchesRecipient(['postmaster@'], 'Postmaster+x@b.example')).toBe(true);
    expect(matchesRecipient(['postmaster@'], 'abuse@a.example')).toBe(false);
  });

  it('matches a domain exactly with "example.org" or "@example.org", and subdomains only with ".example.org"', () => {
    expect(matchesRecipient(['example.org'], 'x@example.org')).toBe(true);
    expect(matchesRecipient(['@example.org'], 'x@sub.example.org')).toBe(false);
    expect(matchesRecipient(['.example.org'], 'x@sub.example.org')).toBe(true);
    expect(matchesRecipient(['.example.org'], 'x@example.org')).toBe(true);
    expect(matchesRecipient(['.example.org'], 'x@badexample.org')).toBe(false);
  });

  it('matches an IDN entry written in Unicode against the A-label Postfix sends', () => {
    expect(matchesRecipient(['bücher.example'], 'x@xn--bcher-kva.example')).toBe(true);
  });

  it('does not strip a "+" inside a quoted local part', () => {
    expect(matchesRecipient(['"a@'], '"a+b"@example.org')).toBe(false);
    expect(matchesRecipient(['"a+b"@example.org'], '"a+b"@example.org')).toBe(true);
  });

  it('"." matches everyone; an empty list nobody', () => {
    expect(matchesRecipient(['.'], 'anyone@anywhere.example')).toBe(true);
    expect(matchesRecipient([], 'anyone@anywhere.example')).toBe(false);
  });
});

describe("the recipient delimiter (Postfix's recipient_delimiter)", () => {
  it('takes each character of a delimiter list as a delimiter, the first one in the local part counting', () => {
    expect(matchesRecipient(['bob@example.org'], 'bob-lists@example.org', '+-')).toBe(true);
    expect(matchesRecipient(['bob@example.org'], 'bob+x-y@example.org', '+-')).toBe(true);
    expect(matchesRecipient(['bob@example.org'], 'bob-lists@example.org')).toBe(false);
    expect(matchesRecipient(['bob@example.org'], 'bob+x@example.org', '')).toBe(false);
  });

  it("uses the bank's recipientDelimiter for a message's recipients", () => {
    const bank = loadTestBank({ recipientDelimiter: '-' });
    expect(bank.recipientDelimiter).toBe('-');
    expect(coversAllRecipients(['bob@example.org'], { ...tx('bob-news@example.org'), bank })).toBe(true);
    expect(coversAllRecipients(['bob@example.org'], { ...tx('bob+news@example.org'), bank })).toBe(false);
    expect(loadTestBank({}).recipientDelimiter).toBe('+');
    expect(() => loadTestBank({ recipientDelimiter: '@' })).toThrow();
  });
});

describe('an exception covers a message only when it covers every recipient', () => {
  it('takes the strict side for mixed recipients', () => {
    expect(coversAllRecipients(['lover@example.org'], tx('lover@example.org'))).toBe(true);
    expect(coversAllRecipients(['lover@example.org'], tx('lover@example.org', 'other@example.org'))).toBe(false);
    expect(coversAllRecipients([], tx('lover@example.org'))).toBe(false);
    expect(coversAllRecipients(['.'], tx())).toBe(false);
  });
});

describe('destinies', () => {
  it('maps pass to a tag with the fields, reject to the reply, discard to the discard reply', () => {
    const fields = [{ name: 'X-Test', value: 'yes' }];
    expect(destinyDecision('pass', replies.contentRejected, fields)).toEqual({ action: 'tag', fields });
    expect(destinyDecision('reject', replies.contentRejected)).toEqual({ action: 'reject', reply: replies.contentRejected });
    expect(destinyDecision('discard', replies.contentRejected)).toEqual({ action: 'discard', reply: replies.discarded });
  });

  it('maps quarantine to the quarantine action (held, no fields) and bounce to a bounce with the refusal its DSN reports', () => {
    expect(destinyDecision('quarantine', replies.contentRejected, [{ name: 'X-Test', value: 'yes' }])).toEqual({ action: 'quarantine' });
    expect(destinyDecision('bounce', replies.contentRejected)).toEqual({ action: 'bounce', reply: replies.contentRejected });
    expect(destinySchema('pass', 'spam').enum).toEqual(['pass', 'reject', 'discard', 'quarantine', 'bounce']);
  });
});
