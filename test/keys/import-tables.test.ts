import { parseDataset } from '../../src/keys/import-opendkim';
import { authorOfPattern } from '../../src/keys/import-tables';

describe('sender patterns of OpenDKIM refile: tables and dkim-filter key lists', () => {
  it.each([
    ['*@example.com', 'example.com'],
    ['*@Example.COM', 'example.com'],
    ['*@*.example.com', '*.example.com'],
  ])('converts %s to the author rule %s', (pattern, author) => {
    expect(authorOfPattern(pattern)).toEqual({ author });
  });

  it.each([
    ['*', 'catch-all'],
    ['*@*', 'catch-all'],
    ['*@*.com', 'public suffix com'],
    ['*@*.co.uk', 'public suffix co.uk'],
    ['joe@example.com', 'per-user'],
    ['joe*@example.com', 'per-user'],
    ['*@*example.com', 'no other wildcards'],
    ['*@mail.*.example.com', 'no other wildcards'],
    ['*example.com', 'has no @'],
  ])('reports %s as not convertible (%s)', (pattern, why) => {
    const r = authorOfPattern(pattern);
    expect('why' in r && r.why).toContain(why);
  });
});

describe('opendkim.conf datasets', () => {
  it('reads refile:, file: and plain paths, and refuses kinds it cannot read', () => {
    expect(parseDataset('refile:/etc/opendkim/SigningTable')).toEqual({ file: '/etc/opendkim/SigningTable', refile: true });
    expect(parseDataset('file:/etc/opendkim/KeyTable')).toEqual({ file: '/etc/opendkim/KeyTable', refile: false });
    expect(parseDataset('/etc/opendkim/KeyTable')).toEqual({ file: '/etc/opendkim/KeyTable', refile: false });
    expect(() => parseDataset('db:/etc/opendkim/keys.db')).toThrow('only file: and refile:');
  });
});
