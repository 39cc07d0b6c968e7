import { readFileSync } from 'node:fs';
import { parseClientWhitelist, parseRecipientWhitelist, WhitelistSyntaxError } from '../../../src/lib/greylist';

const src = (text: string) => [{ name: 'test-list', text }];

describe('client whitelist in postgrey format', () => {
  const list = parseClientWhitelist(src('# comment\nexample.org\n/^mail\\d+\\.bulk\\.example$/\n198.51.100.7\n203.0.113.0/28\n10.1.2\n172.16\n2001:db8:aa::/48\n'));

  it('matches a host name and the names below it, not a name that only ends alike', () => {
    expect(list.matches('example.org', '192.0.2.1')).toBe(true);
    expect(list.matches('mx.EXAMPLE.org', '192.0.2.1')).toBe(true);
    expect(list.matches('badexample.org', '192.0.2.1')).toBe(false);
  });

  it('matches regexps against the client name, addresses, networks and partial addresses', () => {
    expect(list.matches('mail12.bulk.example', '192.0.2.1')).toBe(true);
    expect(list.matches('unknown', '198.51.100.7')).toBe(true);
    expect(list.matches('unknown', '203.0.113.15')).toBe(true);
    expect(list.matches('unknown', '203.0.113.16')).toBe(false);
    expect(list.matches('unknown', '10.1.2.200')).toBe(true);
    expect(list.matches('unknown', '172.16.99.1')).toBe(true);
    expect(list.matches('unknown', '2001:db8:aa:1::5')).toBe(true);
    expect(list.matches('unknown', '::ffff:198.51.100.7')).toBe(true);
    expect(list.matches('unknown', '192.0.2.1')).toBe(false);
  });

  it("reads Debian's shipped /etc/postgrey/whitelist_clients unchanged", () => {
    const file = '/etc/postgrey/whitelist_clients';
    const debian = parseClientWhitelist([{ name: file, text: readFileSync(file, 'latin1') }]);
    expect(debian.size).toBeGreaterThan(50);
    expect(debian.matches('lists.debian.org', '192.0.2.1')).toBe(true);
    expect(debian.matches('mail.sender.example', '192.0.2.1')).toBe(false);
  });

  it('reads a file with CRLF line ends and comments after entries, as postgrey does', () => {
    // Saved by a Windows editor: "#.*$" must not stop at the CR.
    const crlf = parseClientWhitelist(src('# office relays\r\n198.51.100.7 # old MX\r\nexample.org\t# partner\r\n'));
    expect(crlf.size).toBe(2);
    expect(crlf.matches('unknown', '198.51.100.7')).toBe(true);
    expect(crlf.matches('mx.example.org', '192.0.2.1')).toBe(true);
    const rcpt = parseRecipientWhitelist(src('# traps\r\nbob@rcpt.example # bob\r\n'));
    expect(rcpt.matches('bob@rcpt.example')).toBe(true);
  });

  it("reads Perl's \\A and \\z anchors as anchors, and refuses a Perl escape JavaScript would read as a bare letter", () => {
    const anchored = parseClientWhitelist(src('/\\Amail\\d+\\.bulk\\.example\\z/\n'));
    expect(anchored.matches('mail7.bulk.example', '192.0.2.1')).toBe(true);
    expect(anchored.matches('xmail7.bulk.example', '192.0.2.1')).toBe(false);
    expect(() => parseClientWhitelist(src('ok.example\n/^mx\\h/\n'))).toThrow(/test-list line 2: .*\\h means something else in JavaScript/);
    // An escaped backslash followed by a letter is a backslash and the letter.
    expect(parseClientWhitelist(src('/a\\\\z/\n')).matches('a\\z', '192.0.2.1')).toBe(true);
  });

  it('matches the names below a ".example.com" entry (postgrey matches none), not the domain itself', () => {
    const dotted = parseClientWhitelist(src('.example.com\n'));
    expect(dotted.matches('mx.example.com', '192.0.2.1')).toBe(true);
    expect(dotted.matches('example.com', '192.0.2.1')).toBe(false);
    expect(dotted.matches('badexample.com', '192.0.2.1')).toBe(false);
  });

  it("answers within a time limit for a pattern that backtracks exponentially in JavaScript (postgrey's Perl answers at once)", () => {
    // "(\w+\.?)+" is a natural way to write "any names"; a crafted reverse name took 0.4 s at
    // 24 letters and doubled with each one more, holding the whole process (SMTP too).
    const list = parseClientWhitelist(src('/^(\\w+\\.?)+example\\.com$/\n'));
    expect(list.matches('mx1.example.com', '192.0.2.1')).toBe(true);
    const t = Date.now();
    expect(list.matches(`${'a'.repeat(26)}.attacker.example`, '192.0.2.1')).toBe(false);
    expect(Date.now() - t).toBeLessThan(1000);
    const rcpt = parseRecipientWhitelist(src('/^(a|aa)+$/\n'));
    expect(rcpt.matches(`${'a'.repeat(36)}!`)).toBe(false);
    expect(rcpt.matches('aaaa')).toBe(true);
  });

  it("refuses Perl's POSIX classes and \\x{...}, which JavaScript reads as other characters", () => {
    expect(() => parseClientWhitelist(src('/^mx[[:digit:]]+\\.example$/\n'))).toThrow(/line 1: .*\[:digit:\]/);
    expect(() => parseClientWhitelist(src('/^mx\\x{41}/\n'))).toThrow(/line 1: .*\\x/);
    expect(parseClientWhitelist(src('/^mx\\x41[:]/\n')).matches('mxA:', '192.0.2.1')).toBe(true);
  });

  it('names the file and line of an entry it cannot read', () => {
    expect(() => parseClientWhitelist(src('ok.example\n/(unclosed/\n'))).toThrow(WhitelistSyntaxError);
    expect(() => parseClientWhitelist(src('ok.example\n/(unclosed/\n'))).toThrow(/test-list line 2/);
    expect(() => parseClientWhitelist(src('two words\n'))).toThrow(/line 1/);
  });
});

describe('recipient whitelist in postgrey format', () => {
  const list = parseRecipientWhitelist(src('postmaster@\nbob@rcpt.example\nopen.example\n/^noreply-.*@/\n'));

  it('matches user@ in any domain, an address with its +extensions, a domain and its subdomains, a regexp', () => {
    expect(list.matches('Postmaster@anything.example')).toBe(true);
    expect(list.matches('bob@rcpt.example')).toBe(true);
    expect(list.matches('bob+tag@rcpt.example')).toBe(true);
    expect(list.matches('bobby@rcpt.example')).toBe(false);
    expect(list.matches('x@open.example')).toBe(true);
    expect(list.matches('x@sub.open.example')).toBe(true);
    expect(list.matches('x@notopen.example')).toBe(false);
    expect(list.matches('noreply-9@a.example')).toBe(true);
  });

  it("reads Debian's shipped /etc/postgrey/whitelist_recipients unchanged", () => {
    const file = '/etc/postgrey/whitelist_recipients';
    const debian = parseRecipientWhitelist([{ name: file, text: readFileSync(file, 'latin1') }]);
    expect(debian.matches('abuse@rcpt.example')).toBe(true);
    expect(debian.matches('bob@rcpt.example')).toBe(false);
  });
});
