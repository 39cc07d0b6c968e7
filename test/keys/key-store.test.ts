import { createPublicKey } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { loadConfig } from '../../src/setup';
import { isPostsealError, type ErrorCode } from '../../src/errors';
import { edKey, rsaKey, writeSigningFiles, type TestKey } from '../helpers/dkim-verifiers';

/** A config folder with a default bank and the given signing files; returns the main config path. */
function configWith(dkimSign: Record<string, string>, bank: Record<string, unknown> = {}, main: Record<string, unknown> = {}): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'postseal-keys-cfg-'));
  mkdirSync(path.join(dir, 'banks'));
  writeFileSync(path.join(dir, 'banks', 'default.yaml'), YAML.stringify({ forward: { host: '127.0.0.1', port: 25 }, ...bank }));
  writeFileSync(path.join(dir, 'postseal.yaml'), YAML.stringify({ bankDir: 'banks', listeners: [{ port: 0, bank: 'default' }], dkimSign, ...main }));
  return path.join(dir, 'postseal.yaml');
}

function loadError(file: string): { code: ErrorCode; message: string } {
  try {
    loadConfig(file);
  } catch (err) {
    if (isPostsealError(err)) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error('loadConfig did not fail');
}

const rules = [
  { author: 'example.com', keys: ['example-rsa', 'example-ed'] },
  { author: '*.example.com', keys: ['example-rsa'] },
];

describe('key store', () => {
  it('loads both keys once and chooses them by author domain: exact rule, then the nearest *.parent rule', () => {
    const { keys } = loadConfig(configWith(writeSigningFiles([rsaKey, edKey], rules)));
    expect(keys.size).toBe(2);
    expect(keys.forAuthor('example.com').map((k) => `${k.selector}:${k.algorithm}:${k.privateKey.asymmetricKeyType}`)).toEqual([
      'rsa2048:rsa-sha256:rsa',
      'ed1:ed25519-sha256:ed25519',
    ]);
    expect(keys.forAuthor('a.b.example.com').map((k) => k.name)).toEqual(['example-rsa']);
    expect(keys.forAuthor('example.org')).toEqual([]);
    expect(keys.forAuthor('notexample.com')).toEqual([]);
  });

  it('loads staged and retiring keys but signs only with the active ones', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'postseal-states-'));
    const keyTableFile = path.join(dir, 'kt.yaml');
    const signingTableFile = path.join(dir, 'st.yaml');
    const entry = (selector: string, state?: string) => ({ domain: 'example.com', selector, keyFile: rsaKey.file, algorithm: 'rsa-sha256', ...(state ? { state } : {}) });
    writeFileSync(keyTableFile, YAML.stringify({ old: entry('old', 'retiring'), cur: entry('cur'), next: entry('next', 'staged') }));
    writeFileSync(
      signingTableFile,
      YAML.stringify([
        { author: 'example.com', keys: ['old', 'cur', 'next'] },
        { author: 'staged.example.com', keys: ['next'] },
      ]),
    );
    const { keys } = loadConfig(configWith({ keyTableFile, signingTableFile }));
    expect(keys.keys.map((k) => `${k.name}:${k.state}`)).toEqual(['old:retiring', 'cur:active', 'next:staged']);
    expect(keys.forAuthor('example.com').map((k) => k.name)).toEqual(['cur']);
    expect(keys.ruleFor('example.com')!.keys.map((k) => k.name)).toEqual(['old', 'cur', 'next']);
    expect(keys.forAuthor('staged.example.com')).toEqual([]);
    expect(keys.ruleFor('staged.example.com')!.index).toBe(1);
  });

  it('has no keys when no signing files are configured', () => {
    expect(loadConfig(configWith({})).keys.size).toBe(0);
  });

  it.each([['*'], ['*.com'], ['*.co.uk'], ['*.github.io']])('refuses the catch-all rule %s with the file and the JSON pointer', (author) => {
    const files = writeSigningFiles(
      [rsaKey],
      [
        { author: 'example.com', keys: ['example-rsa'] },
        { author, keys: ['example-rsa'] },
      ],
    );
    const e = loadError(configWith(files));
    expect(e.code).toBe('CFG_SIGNING_CATCH_ALL');
    expect(e.message).toContain(`${files.signingTableFile}: /1/author:`);
  });

  it('stops on a missing key file, naming the key table and the key', () => {
    const files = writeSigningFiles([{ ...rsaKey, file: '/nonexistent/key.pem' }], [{ author: 'example.com', keys: ['example-rsa'] }]);
    const e = loadError(configWith(files));
    expect(e.code).toBe('CFG_KEY_UNREADABLE');
    expect(e.message).toContain(`${files.keyTableFile}: /example-rsa/keyFile: /nonexistent/key.pem`);
  });

  it('stops on a key file that cannot be read (a folder)', () => {
    const files = writeSigningFiles([{ ...rsaKey, file: tmpdir() }], [{ author: 'example.com', keys: ['example-rsa'] }]);
    expect(loadError(configWith(files)).code).toBe('CFG_KEY_UNREADABLE');
  });

  it('stops on a key file that is not a private key', () => {
    const bad = path.join(mkdtempSync(path.join(tmpdir(), 'postseal-badkey-')), 'bad.pem');
    writeFileSync(bad, '-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n');
    const e = loadError(configWith(writeSigningFiles([{ ...rsaKey, file: bad }], [{ author: 'example.com', keys: ['example-rsa'] }])));
    expect(e.code).toBe('CFG_KEY_INVALID');
    expect(e.message).toContain('/example-rsa/keyFile');
  });

  it("says that a public key or opendkim-genkey's .txt record was given where the private key goes", () => {
    const folder = mkdtempSync(path.join(tmpdir(), 'postseal-pubkey-'));
    const pub = path.join(folder, 'mail.pem');
    writeFileSync(pub, createPublicKey(readFileSync(rsaKey.file)).export({ type: 'spki', format: 'pem' }));
    const txt = path.join(folder, 'mail.txt');
    writeFileSync(txt, 'mail._domainkey\tIN\tTXT\t( "v=DKIM1; h=sha256; k=rsa; " "p=MIIB..." )  ; ----- DKIM key mail for example.com\n');
    const errorFor = (file: string) => loadError(configWith(writeSigningFiles([{ ...rsaKey, file }], [{ author: 'example.com', keys: ['example-rsa'] }])));
    expect(errorFor(pub)).toMatchObject({ code: 'CFG_KEY_INVALID', message: expect.stringContaining('; this is a public key: give the private key it was made from') });
    expect(errorFor(txt)).toMatchObject({ code: 'CFG_KEY_INVALID', message: expect.stringContaining("; this is the DNS record (opendkim-genkey's SELECTOR.txt)") });
  });

  it('stops when the algorithm does not fit the key', () => {
    const wrong: TestKey = { ...edKey, algorithm: 'rsa-sha256' };
    expect(loadError(configWith(writeSigningFiles([wrong], [{ author: 'example.com', keys: ['example-ed'] }]))).code).toBe('CFG_KEY_INVALID');
  });

  it('refuses DomainKeys on an Ed25519 key', () => {
    const e = loadError(configWith(writeSigningFiles([{ ...edKey, domainKeys: 'nofws' }], [{ author: 'example.com', keys: ['example-ed'] }])));
    expect([e.code, e.message.includes('/example-ed/domainKeys')]).toEqual(['CFG_INCONSISTENT', true]);
  });

  it('refuses a rule naming a key that is not in the key table', () => {
    const files = writeSigningFiles([rsaKey], [{ author: 'example.com', keys: ['example-rsa', 'nope'] }]);
    const e = loadError(configWith(files));
    expect([e.code, e.message.includes(`${files.signingTableFile}: /0/keys/1`)]).toEqual(['CFG_INCONSISTENT', true]);
  });

  it('refuses a key of another domain unless the rule says thirdParty', () => {
    const files = writeSigningFiles([rsaKey], [{ author: 'customer.example.org', keys: ['example-rsa'] }]);
    expect(loadError(configWith(files)).code).toBe('CFG_INCONSISTENT');
    const ok = writeSigningFiles([rsaKey], [{ author: 'customer.example.org', keys: ['example-rsa'], thirdParty: true }]);
    expect(loadConfig(configWith(ok)).keys.forAuthor('customer.example.org')).toHaveLength(1);
  });

  it('explains a key table that does not match its schema with the JSON pointer', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'postseal-kt-'));
    const keyTableFile = path.join(dir, 'kt.yaml');
    writeFileSync(keyTableFile, YAML.stringify({ k: { domain: 'example.com', selector: 's', keyFile: 'x.pem', algorithm: 'rsa-sha1' } }));
    writeFileSync(path.join(dir, 'st.yaml'), '[]\n');
    const e = loadError(configWith({ keyTableFile, signingTableFile: path.join(dir, 'st.yaml') }));
    expect([e.code, e.message]).toEqual(['CFG_SCHEMA_INVALID', expect.stringContaining(`${keyTableFile}: /k/algorithm: must be one of "rsa-sha256", "ed25519-sha256"`)]);
  });

  it("refuses OpenDKIM's KeyTable given as the key table, saying how to convert it", () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'postseal-opendkim-'));
    const keyTableFile = path.join(dir, 'KeyTable');
    writeFileSync(keyTableFile, `mail._domainkey.example.com example.com:mail:${rsaKey.file}\n`);
    writeFileSync(path.join(dir, 'st.yaml'), '[]\n');
    const e = loadError(configWith({ keyTableFile, signingTableFile: path.join(dir, 'st.yaml') }));
    expect(e.code).toBe('CFG_SCHEMA_INVALID');
    expect(e.message).toMatch(new RegExp(`^${keyTableFile}: /: this is a text table \\(an OpenDKIM KeyTable\\?\\), not YAML; .*postseal keys import --opendkim-keytable`));
  });

  it("explains OpenDKIM's SigningTable given as the signing table (not YAML: *@ starts an alias) with the import", () => {
    const { keyTableFile } = writeSigningFiles([rsaKey], []);
    const signingTableFile = path.join(path.dirname(keyTableFile), 'SigningTable');
    writeFileSync(signingTableFile, '*@example.com mail._domainkey.example.com\n');
    const e = loadError(configWith({ keyTableFile, signingTableFile }));
    expect(e.code).toBe('CFG_YAML_INVALID');
    expect(e.message).toMatch(new RegExp(`^${signingTableFile}:1:\\d+: .*; if it is an OpenDKIM table, convert OpenDKIM's with postseal keys import`));
  });

  it('refuses an OpenDKIM data set (refile:) as a table file, naming the main file and pointer', () => {
    const { keyTableFile } = writeSigningFiles([rsaKey], []);
    const file = configWith({ keyTableFile, signingTableFile: 'refile:/etc/opendkim/SigningTable' });
    const e = loadError(file);
    expect(e.code).toBe('CFG_SCHEMA_INVALID');
    expect(e.message).toMatch(new RegExp(`^${file}: /dkimSign/signingTableFile: "refile:/etc/opendkim/SigningTable" is an OpenDKIM data set; .*postseal keys import`));
  });

  it('warns when the signing table has active keys but no listened bank lists dkim-sign (nothing would be signed)', () => {
    const files = writeSigningFiles([rsaKey], [{ author: 'example.com', keys: ['example-rsa'] }]);
    const unsigned = loadConfig(configWith(files));
    expect(unsigned.warnings.filter((w) => w.code === 'CFG_KEYS_UNUSED')).toEqual([
      {
        code: 'CFG_KEYS_UNUSED',
        message: expect.stringMatching(new RegExp(`^${unsigned.file}: /dkimSign: the signing table has active keys, but no bank .*\\(default\\) lists dkim-sign`)),
      },
    ]);
    const signing = loadConfig(configWith(files, { originating: true, stages: ['seven-bit', 'dkim-sign'] }));
    expect(signing.warnings.map((w) => w.code)).not.toContain('CFG_KEYS_UNUSED');
  });

  it('does not warn CFG_KEYS_UNUSED for keys that sign only what postseal writes itself (DMARC reports, DSNs, notices)', () => {
    const files = writeSigningFiles([rsaKey], [{ author: 'example.com', keys: ['example-rsa'] }]);
    const notify = { notify: { host: '127.0.0.1', port: 10027 } };
    const reports = loadConfig(configWith(files, notify, { services: { dmarcReports: { enabled: true, from: 'dmarc-reports@example.com' } } }));
    expect(reports.warnings.map((w) => w.code)).not.toContain('CFG_KEYS_UNUSED');
    const notices = loadConfig(configWith(files, { ...notify, notices: { virusAdmin: ['postmaster@example.com'] } }, { notify: { from: 'postmaster@example.com' } }));
    expect(notices.warnings.map((w) => w.code)).not.toContain('CFG_KEYS_UNUSED');
  });

  it('refuses dkim-sign on a bank that is not originating', () => {
    const e = loadError(configWith({}, { stages: ['dkim-sign'] }));
    expect([e.code, e.message]).toEqual(['CFG_INCONSISTENT', expect.stringContaining('default.yaml: /stages: dkim-sign')]);
  });

  it('refuses a signed header list without From', () => {
    const e = loadError(configWith({}, { originating: true, stages: ['dkim-sign'], dkimSign: { bySender: [{ senders: ['example.com'], signedHeaderFields: ['subject'] }] } }));
    expect([e.code, e.message]).toEqual(['CFG_INCONSISTENT', expect.stringContaining('/dkimSign/bySender/0/signedHeaderFields')]);
  });
});
