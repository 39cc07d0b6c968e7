/**
 * `postseal keys import` of the sample OpenDKIM tables (refile: wildcards, a % key) and a
 * dkim-filter key list, with the keys where the tables say (moved under a temporary
 * folder): the result passes `config check`, and postseal then signs mail of the same
 * domains with the same d= and selectors as the old signer; what it cannot express is
 * reported with file and line.
 */
import { createPrivateKey } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { runCli } from '../../helpers/cli';
import { edKey, rsaKey } from '../../helpers/dkim-verifiers';
import { startHarness } from '../../helpers/postseal';
import { startSink } from '../../helpers/sink';
import { TestClient } from '../../helpers/smtp-client';

const fixtures = path.resolve(__dirname, '../../fixtures/opendkim');
// opendkim-genkey writes PKCS#1 RSA keys; postseal reads them as they are.
const rsaPem = createPrivateKey(readFileSync(rsaKey.file)).export({ type: 'pkcs1', format: 'pem' });
const edPem = readFileSync(edKey.file);

/** The fixture with its /etc paths moved under `root`, and the key files it names written there. */
function install(root: string, fixture: string, keys: Record<string, string | Buffer>): string {
  for (const [file, pem] of Object.entries(keys)) {
    mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    writeFileSync(path.join(root, file), pem, { mode: 0o600 });
  }
  const out = path.join(root, fixture);
  writeFileSync(out, readFileSync(path.join(fixtures, fixture), 'utf8').replaceAll('/etc/', `${root}/etc/`));
  return out;
}

/** d= and s= of each DKIM-Signature of the signed message, sorted. */
function signatures(message: Buffer): string[] {
  const header = message
    .toString('latin1')
    .split('\r\n\r\n')[0]
    .replace(/\r\n[ \t]+/g, ' ');
  return header
    .split('\r\n')
    .filter((l) => l.startsWith('DKIM-Signature:'))
    .map((l) => `d=${/\bd=([^;\s]+)/.exec(l)![1]} s=${/\bs=([^;\s]+)/.exec(l)![1]}`)
    .sort();
}

async function signedBy(keyTableFile: string, signingTableFile: string, authors: string[]): Promise<Record<string, string[]>> {
  const sink = await startSink();
  const h = await startHarness({
    forwardPort: sink.port,
    banks: { default: { originating: true, stages: ['dkim-sign'] } },
    main: { dkimSign: { keyTableFile, signingTableFile } },
  });
  const seen: Record<string, string[]> = {};
  try {
    for (const author of authors) {
      const c = await TestClient.connect(h.app.portOf('default'));
      const r = await c.send({ from: author, to: ['b@example.net'], data: `From: ${author}\r\nSubject: import\r\n\r\nbody\r\n` });
      await c.quit();
      expect(r.final?.code).toBe(250);
      seen[author] = signatures(sink.received[sink.received.length - 1].data);
    }
  } finally {
    await h.close();
    await sink.close();
  }
  return seen;
}

function configCheck(dir: string): { status: number | null; stdout: string; stderr: string } {
  writeFileSync(
    path.join(dir, 'postseal.yaml'),
    // With the shipped ORIGINATING bank, which signs: keys that no listened bank uses are a warning (CFG_KEYS_UNUSED).
    YAML.stringify({
      bankDir: '',
      listeners: [
        { port: 0, bank: 'default' },
        { port: 0, bank: 'ORIGINATING' },
      ],
      dkimSign: { keyTableFile: 'key-table.yaml', signingTableFile: 'signing-table.yaml' },
    }),
  );
  return runCli(['config', 'check', '--config', path.join(dir, 'postseal.yaml')]);
}

describe('postseal keys import', () => {
  it('converts OpenDKIM refile: tables into files that config check accepts and that sign the same domains with the same selectors', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'postseal-import-'));
    const k = '/etc/opendkim/keys';
    const keyTable = install(root, 'KeyTable', {
      [`${k}/example.com/mail2024.private`]: rsaPem,
      [`${k}/example.com/ed2024.private`]: edPem,
      [`${k}/lists.example.net/lst.private`]: rsaPem,
      [`${k}/default.private`]: rsaPem,
    });
    const signingTable = install(root, 'SigningTable', {});
    const out = path.join(root, 'postseal-keys');
    const r = runCli(['keys', 'import', '--opendkim-keytable', keyTable, '--opendkim-signingtable', `refile:${signingTable}`, '--out', out]);
    // Three lines cannot be expressed by author domain; the rest is written all the same.
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${signingTable}:9: "ceo@example.net" is a per-user rule`);
    expect(r.stderr).toContain(`${signingTable}:10: key "shared" signs with d= of each From domain`);
    expect(r.stderr).toContain(`${signingTable}:11: "*" is a catch-all`);
    expect(r.stderr).toContain(`${keyTable}:8: note: key "unused" is used by no SigningTable line`);
    expect(r.stderr).toContain('postseal: 5 keys and 5 rules converted; 3 entries need attention');

    expect(configCheck(out)).toMatchObject({ status: 0, stderr: '' });
    expect(readFileSync(path.join(out, 'key-table.yaml'), 'utf8')).toMatch(/^# postseal key table .*\n# Converted by postseal keys import from /);
    const seen = await signedBy(path.join(out, 'key-table.yaml'), path.join(out, 'signing-table.yaml'), [
      'a@example.com',
      'a@sub.example.com',
      'a@lists.example.net',
      'a@example.org',
      'a@example.info',
      'a@other.example',
    ]);
    expect(seen).toEqual({
      'a@example.com': ['d=example.com s=ed2024', 'd=example.com s=mail2024'],
      'a@sub.example.com': ['d=example.com s=mail2024'],
      'a@lists.example.net': ['d=lists.example.net s=lst'],
      'a@example.org': ['d=example.org s=default'],
      'a@example.info': ['d=example.info s=default'],
      'a@other.example': [],
    });
  });

  it('converts a plain (file:) SigningTable: domains and .parent entries', () => {
    const root = mkdtempSync(path.join(tmpdir(), 'postseal-import-'));
    const keyTable = install(root, 'KeyTable', {});
    const signingTable = install(root, 'SigningTable.plain', {});
    const r = runCli(['keys', 'import', '--opendkim-keytable', keyTable, '--opendkim-signingtable', `file:${signingTable}`]);
    expect(r.status).toBe(1);
    const [keys, rules] = r.stdout.split('---\n').map((doc) => YAML.parse(doc));
    expect(rules).toEqual([
      { author: 'example.com', keys: ['mail-example-com'] },
      { author: '*.example.com', keys: ['mail-example-com'] },
      { author: 'lists.example.net', keys: ['lists-example-net'] },
    ]);
    expect(Object.keys(keys)).toEqual(['mail-example-com', 'lists-example-net']);
    expect(r.stderr).toContain(`${signingTable}:5: "joe@example.com" is a per-user rule`);
    // The keys were not installed: each is reported, and the files would fail config check.
    expect(r.stderr).toMatch(/KeyTable:3: cannot read the key .*mail2024\.private/);
  });

  it('converts a dkim-filter key list: the selector is the key file name, found with .pem appended as dkim-filter does', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'postseal-import-'));
    const k = '/etc/dkim-filter/keys';
    const keyList = install(root, 'KeyList', { [`${k}/example.com/mail2024`]: rsaPem, [`${k}/example.org/sel2024.pem`]: edPem });
    const out = path.join(root, 'postseal-keys');
    const r = runCli(['keys', 'import', '--dkim-filter-keylist', keyList, '--out', out]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${keyList}:6: "joe@example.net" is a per-user rule`);
    expect(r.stderr).toContain('postseal: 2 keys and 3 rules converted; 1 entries need attention');
    expect(configCheck(out)).toMatchObject({ status: 0, stderr: '' });
    expect(YAML.parse(readFileSync(path.join(out, 'key-table.yaml'), 'utf8'))['example.org-sel2024']).toEqual({
      domain: 'example.org',
      selector: 'sel2024',
      keyFile: path.join(root, k, 'example.org/sel2024.pem'),
      algorithm: 'ed25519-sha256',
    });
    const seen = await signedBy(path.join(out, 'key-table.yaml'), path.join(out, 'signing-table.yaml'), [
      'a@example.com',
      'a@deep.sub.example.com',
      'a@example.org',
      'joe@example.net',
    ]);
    expect(seen).toEqual({
      'a@example.com': ['d=example.com s=mail2024'],
      'a@deep.sub.example.com': ['d=example.com s=mail2024'],
      'a@example.org': ['d=example.org s=sel2024'],
      'joe@example.net': [],
    });
  });

  it('keeps existing output files unless --force; an unreadable input imports nothing', () => {
    const root = mkdtempSync(path.join(tmpdir(), 'postseal-import-'));
    writeFileSync(path.join(root, 'key-table.yaml'), 'mine: {}\n');
    const keyList = install(root, 'KeyList', {});
    expect(runCli(['keys', 'import', '--dkim-filter-keylist', keyList, '--out', root]).stderr).toContain('keeping them (use --force');
    expect(readFileSync(path.join(root, 'key-table.yaml'), 'utf8')).toBe('mine: {}\n');
    const missing = runCli(['keys', 'import', '--dkim-filter-keylist', path.join(root, 'nope')]);
    expect([missing.status, missing.stderr]).toEqual([1, expect.stringContaining('nothing imported')]);
    expect(runCli(['keys', 'import', '--opendkim-keytable', keyList]).status).toBe(2);
  });
});
