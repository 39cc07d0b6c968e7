import { compileBankRules, senderMatches } from '../../src/config/bank-rules';

describe('senderMatches', () => {
  it('a sender rule applies only on the listeners it names', () => {
    const c = compileBankRules({ clientNetworks: [], senders: [{ senders: ['example.com'], bank: 'SENDER', listenerBanks: ['ORIGINATING'] }] });
    expect(c.choose({ port: 10024, bank: 'default' }, '203.0.113.9', 'ceo@example.com').bank).toBe('default');
    expect(c.choose({ port: 10026, bank: 'ORIGINATING' }, '203.0.113.9', 'ceo@example.com').bank).toBe('SENDER');
  });

  it('an address rule matches that address only, case-insensitively', () => {
    expect(senderMatches('news@example.com', 'News@EXAMPLE.com')).toBe(true);
    expect(senderMatches('news@example.com', 'other@example.com')).toBe(false);
  });
  it('a domain rule matches the domain, not its subdomains', () => {
    expect(senderMatches('example.com', 'a@example.com')).toBe(true);
    expect(senderMatches('example.com', 'a@sub.example.com')).toBe(false);
    expect(senderMatches('example.com', 'a@badexample.com')).toBe(false);
  });
  it('a *.domain rule matches the subdomains, not the domain nor look-alikes', () => {
    expect(senderMatches('*.example.com', 'a@x.y.example.com')).toBe(true);
    expect(senderMatches('*.example.com', 'a@example.com')).toBe(false);
    expect(senderMatches('*.example.com', 'a@xexample.com')).toBe(false);
  });
  it('<> matches the null sender, and nothing else matches it', () => {
    expect(senderMatches('<>', '')).toBe(true);
    expect(senderMatches('example.com', '')).toBe(false);
    expect(senderMatches('<>', 'a@example.com')).toBe(false);
  });
});

describe('compileBankRules', () => {
  const rules = compileBankRules({
    clientNetworks: [
      { networks: ['10.0.0.0/8'], bank: 'TEN', listenerBanks: [] },
      { networks: ['10.1.0.0/16', '2001:db8::/32'], bank: 'NEVER', listenerBanks: [] },
    ],
    senders: [{ senders: ['example.com'], bank: 'SENDER', listenerBanks: ['default'] }],
  });
  it('the first matching network rule wins and the chain names every step', () => {
    expect(rules.choose({ port: 10024, bank: 'default' }, '10.1.2.3', 'a@example.com').steps).toEqual([
      { bank: 'default', rule: 'listener port 10024' },
      { bank: 'TEN', rule: 'clientNetworks[0] 10.0.0.0/8' },
      { bank: 'SENDER', rule: 'senders[0] example.com' },
    ]);
  });
  it('an IPv4-mapped IPv6 peer matches its IPv4 network', () => {
    expect(rules.choose({ port: 1, bank: 'default' }, '::ffff:10.2.3.4', 'x@y.z').bank).toBe('TEN');
  });
  it('a rule limited to other listener banks does not apply', () => {
    expect(rules.choose({ port: 10026, bank: 'ORIGINATING' }, '192.0.2.1', 'a@example.com')).toMatchObject({ bank: 'ORIGINATING', rule: 'listener port 10026' });
  });
  it('a bad network names its pointer', () => {
    expect(() => compileBankRules({ clientNetworks: [{ networks: ['10.0.0.0/8', 'mail.example'], bank: 'X', listenerBanks: [] }], senders: [] })).toThrow(
      '/bankRules/clientNetworks/0/networks/1: "mail.example" is not an IPv4 or IPv6 network',
    );
  });
});

describe('macro rules (milter listeners)', () => {
  const rules = compileBankRules({
    clientNetworks: [{ networks: ['192.0.2.0/24'], bank: 'MYNETS', listenerBanks: ['ORIGINATING'] }],
    senders: [],
    macros: [
      { macro: '{daemon_name}', values: ['ORIGINATING'], bank: 'ORIGINATING', listenerBanks: [] },
      { macro: '{auth_authen}', values: [], bank: 'ORIGINATING', listenerBanks: ['default'] },
    ],
  });
  const macros = (m: Record<string, string>) => new Map(Object.entries(m));

  it('picks the bank of the first rule whose macro has one of its values, before the network rules', () => {
    expect(rules.choose({ port: 10030, bank: 'default' }, '198.51.100.7', 'a@example.org', macros({ '{daemon_name}': 'ORIGINATING' })).steps).toEqual([
      { bank: 'default', rule: 'listener port 10030' },
      { bank: 'ORIGINATING', rule: 'macros[0] {daemon_name}=ORIGINATING' },
    ]);
  });

  it('matches any non-empty value when the rule lists none, and not an empty one', () => {
    expect(rules.choose({ port: 10030, bank: 'default' }, undefined, 'a@example.org', macros({ '{auth_authen}': 'alice' })).bank).toBe('ORIGINATING');
    expect(rules.choose({ port: 10030, bank: 'default' }, undefined, 'a@example.org', macros({ '{auth_authen}': '' })).bank).toBe('default');
  });

  it("lets the later rules' listenerBanks compare with the bank the macro rule chose", () => {
    expect(rules.choose({ port: 10030, bank: 'default' }, '192.0.2.9', 'a@example.org', macros({ '{daemon_name}': 'ORIGINATING' })).bank).toBe('MYNETS');
    expect(rules.choose({ port: 10030, bank: 'default' }, '192.0.2.9', 'a@example.org', macros({ '{daemon_name}': 'mail.example.org' })).bank).toBe('default');
  });

  it('applies no macro rule on an SMTP listener, which has no macros', () => {
    expect(rules.choose({ port: 10024, bank: 'default' }, undefined, 'a@example.org').bank).toBe('default');
    expect(rules.macros).toEqual(['{daemon_name}', '{auth_authen}']);
  });
});
