/**
 * `postseal keys activate` refusals: the key table is left as it was. (The activation
 * itself, under load and with SIGHUP, is in rotation.test.ts.)
 */
import { chmodSync, chownSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { startDnsServer, type DnsServer } from '../../helpers/dns-server';
import { rsaKey, zoneFor } from '../../helpers/dkim-verifiers';
import { runCliAsync, writeKeyConfig, type KeyConfig } from '../../helpers/key-config';

let dns: DnsServer;
let cfg: KeyConfig;

beforeAll(async () => {
  // Only the active key's record is published; the staged one's is not.
  dns = await startDnsServer(zoneFor([{ ...rsaKey, domain: 'example.com', selector: 'cur' }]));
  cfg = writeKeyConfig({
    keys: {
      cur: { domain: 'example.com', selector: 'cur', keyFile: rsaKey.file, algorithm: 'rsa-sha256' },
      next: { domain: 'example.com', selector: 'next', keyFile: rsaKey.file, algorithm: 'rsa-sha256', state: 'staged' },
    },
    rules: [{ author: 'example.com', keys: ['cur', 'next'] }],
    dnsServer: dns.server,
  });
});

afterAll(() => dns.close());

const activate = (selector: string) => runCliAsync(['keys', 'activate', '--domain', 'example.com', '--selector', selector, '--config', cfg.config]);

describe('postseal keys activate', () => {
  it('refuses a key whose record keys test does not find, and leaves the key table alone', async () => {
    const before = readFileSync(cfg.keyTableFile, 'utf8');
    const r = await activate('next');
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/^FAIL next\._domainkey\.example\.com \(next, staged, rsa-sha256\): KEY_MISSING /);
    expect(r.stderr).toContain('not activated');
    expect(readFileSync(cfg.keyTableFile, 'utf8')).toBe(before);
  });

  it('says so for a key that is already active, and refuses an unknown selector', async () => {
    expect(await activate('cur')).toMatchObject({ status: 0, stdout: expect.stringContaining('already active') });
    expect(await activate('nope')).toMatchObject({ status: 1, stderr: expect.stringContaining('no key with d=example.com s=nope') });
    expect((await runCliAsync(['keys', 'activate', '--domain', 'example.com', '--config', cfg.config])).status).toBe(2);
  });

  it('is refused while another activation holds the key table lock, and leaves the table and the lock alone', async () => {
    const before = readFileSync(cfg.keyTableFile, 'utf8');
    // This test process is alive: its pid in the lock is a running activation.
    writeFileSync(`${cfg.keyTableFile}.lock`, `${process.pid}\n`);
    try {
      const r = await activate('next');
      expect(r.status).toBe(1);
      expect(r.stderr).toContain('CFG_KEY_TABLE_LOCKED');
      expect(r.stderr).toContain(`${cfg.keyTableFile}.lock`);
      expect(readFileSync(cfg.keyTableFile, 'utf8')).toBe(before);
      expect(readFileSync(`${cfg.keyTableFile}.lock`, 'utf8')).toBe(`${process.pid}\n`);
    } finally {
      rmSync(`${cfg.keyTableFile}.lock`);
    }
  });

  it("activates once the record is published, keeping the table's owner and mode, and removes its lock", async () => {
    Object.assign(dns.zone, zoneFor([{ ...rsaKey, domain: 'example.com', selector: 'next' }]));
    chownSync(cfg.keyTableFile, 65534, 65534);
    chmodSync(cfg.keyTableFile, 0o640);
    const r = await activate('next');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('next (d=example.com s=next rsa-sha256): staged -> active');
    const st = statSync(cfg.keyTableFile);
    expect([st.uid, st.gid, st.mode & 0o777]).toEqual([65534, 65534, 0o640]);
    expect(readdirSync(path.dirname(cfg.keyTableFile)).sort()).toEqual(['key-table.yaml', 'signing-table.yaml']);
  });
});
