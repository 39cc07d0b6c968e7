/**
 * `postseal keys test` against records that are wrong in the ways published records go
 * wrong: another key, no record, a record cut at 255 octets, a revoked key, t=y left on,
 * a DNS server that fails. One line per key, the code says which; exit 1 on any failure.
 */
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { keyRecordText } from '../../../src/lib/dkim-key-record';
import { startDnsServer, type DnsServer } from '../../helpers/dns-server';
import { edKey, rsaKey } from '../../helpers/dkim-verifiers';
import { runCliAsync, writeKeyConfig, type KeyConfig, type KeyEntry } from '../../helpers/key-config';

const rsaRecord = keyRecordText(createPrivateKey(readFileSync(rsaKey.file)));
const edRecord = keyRecordText(createPrivateKey(readFileSync(edKey.file)));
/** Where the key data starts in the record. */
const pAt = rsaRecord.indexOf('p=') + 2;
const otherRsaRecord = keyRecordText(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey);

const domains: Record<string, { key: 'rsa' | 'ed'; txt?: string; behaviour?: 'servfail' }> = {
  'good.example': { key: 'rsa', txt: rsaRecord },
  'mismatch.example': { key: 'rsa', txt: otherRsaRecord },
  'missing.example': { key: 'rsa' },
  'truncated.example': { key: 'rsa', txt: rsaRecord.slice(0, 255) },
  'revoked.example': { key: 'rsa', txt: 'v=DKIM1; k=rsa; p=' },
  'testing.example': { key: 'ed', txt: edRecord.replace('k=ed25519;', 'k=ed25519; t=y;') },
  'broken-dns.example': { key: 'ed', txt: edRecord, behaviour: 'servfail' },
};

let dns: DnsServer;
let cfg: KeyConfig;

beforeAll(async () => {
  dns = await startDnsServer(
    Object.fromEntries(Object.entries(domains).flatMap(([d, v]) => (v.txt ? [[`s1._domainkey.${d}`, { TXT: [v.txt], ...(v.behaviour ? { behaviour: v.behaviour } : {}) }]] : []))),
  );
  const keys: Record<string, KeyEntry> = {};
  for (const [d, v] of Object.entries(domains)) {
    keys[d.split('.')[0]] = { domain: d, selector: 's1', keyFile: v.key === 'rsa' ? rsaKey.file : edKey.file, algorithm: v.key === 'rsa' ? 'rsa-sha256' : 'ed25519-sha256' };
  }
  cfg = writeKeyConfig({ keys, rules: Object.keys(domains).map((d) => ({ author: d, keys: [d.split('.')[0]] })), dnsServer: dns.server });
});

afterAll(() => dns.close());

const test = (...args: string[]) => runCliAsync(['keys', 'test', '--config', cfg.config, ...args]);

describe('postseal keys test', () => {
  it('passes a key whose record matches: exit 0, one "ok" line', async () => {
    const r = await test('good.example');
    expect([r.status, r.stdout]).toEqual([0, expect.stringMatching(/^ok +s1\._domainkey\.good\.example \(good, active, rsa-sha256\): KEY_OK [^\n]*\n$/)]);
  });

  it.each([
    ['mismatch.example', 'KEY_MISMATCH', 'publishes another rsa key, not the public half of'],
    ['missing.example', 'KEY_MISSING', 'no TXT record (NXDOMAIN)'],
    ['truncated.example', 'KEY_TRUNCATED', `p= holds ${255 - pAt} of the key's ${rsaRecord.length - pAt} characters`],
    ['revoked.example', 'KEY_REVOKED', 'empty p='],
    ['broken-dns.example', 'KEY_DNS_TEMPERROR', 'answered rcode 2'],
  ])('fails %s with %s and exit 1', async (domain, code, text) => {
    const r = await test(domain);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`^FAIL s1\\._domainkey\\.${domain.replace(/\./g, '\\.')} \\([a-z-]+, active, [a-z0-9-]+\\): ${code} `));
    expect(r.stdout).toContain(text);
  });

  it('warns about t=y left on, and still exits 0', async () => {
    const r = await test('testing.example');
    expect([r.status, r.stdout]).toEqual([0, expect.stringMatching(/^warn s1\._domainkey\.testing\.example .*: KEY_TESTING t=y is still set/)]);
  });

  it('tests every key without arguments: one line each, exit 1 when one fails', async () => {
    const r = await test();
    expect(r.status).toBe(1);
    expect(
      r.stdout
        .trim()
        .split('\n')
        .map((l) => l.split(' ')[0]),
    ).toEqual(['ok', 'FAIL', 'FAIL', 'FAIL', 'FAIL', 'warn', 'FAIL']);
  });

  it('config check --dns fails with the same lines; without --dns the files alone are valid', async () => {
    const withDns = await runCliAsync(['config', 'check', '--dns', '--config', cfg.config]);
    expect([withDns.status, withDns.stdout]).toEqual([1, expect.stringContaining('KEY_MISMATCH')]);
    const plain = await runCliAsync(['config', 'check', '--config', cfg.config]);
    expect([plain.status, plain.stdout]).toEqual([0, expect.stringContaining('signing keys: 7 active')]);
  });

  it('refuses a domain that no key signs, for show and test, with exit 1', async () => {
    for (const sub of ['show', 'test']) {
      const r = await runCliAsync(['keys', sub, 'nowhere.example', '--config', cfg.config]);
      expect([r.status, r.stderr]).toEqual([1, expect.stringContaining('no key in')]);
    }
  });
});
