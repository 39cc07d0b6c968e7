/**
 * generate -> show -> test through the built CLI, with the loopback DNS server serving the
 * records parsed from the printed zone-file text; then mail signed with the generated key,
 * checked by Mail::DKIM and dkimpy against that record.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startDnsServer } from '../../helpers/dns-server';
import { dkimpy, mailDkim } from '../../helpers/dkim-verifiers';
import { runCliAsync, writeKeyConfig, zoneFromRecords } from '../../helpers/key-config';
import { startHarness } from '../../helpers/postseal';
import { startSink } from '../../helpers/sink';
import { TestClient } from '../../helpers/smtp-client';

describe.each([
  ['rsa', 'rsa-sha256', ['--bits', '2048']],
  ['ed25519', 'ed25519-sha256', []],
] as const)('postseal keys with a generated %s key', (type, algorithm, extra) => {
  const domain = `${type}.example.org`;
  const record = `sel1._domainkey.${domain}`;

  it('generate -> show -> test: show prints the record generate printed, and test passes against it', async () => {
    const keyDir = mkdtempSync(path.join(tmpdir(), 'postseal-gen-'));
    const gen = await runCliAsync(['keys', 'generate', '--domain', domain, '--selector', 'sel1', '--type', type, ...extra, '--out', keyDir]);
    expect(gen.status).toBe(0);
    const dns = await startDnsServer();
    const cfg = writeKeyConfig({
      keys: { k1: { domain, selector: 'sel1', keyFile: path.join(keyDir, `${domain}.sel1.pem`), algorithm } },
      rules: [{ author: domain, keys: ['k1'] }],
      dnsServer: dns.server,
    });
    try {
      const show = await runCliAsync(['keys', 'show', '--config', cfg.config]);
      expect(show.status).toBe(0);
      expect(show.stdout).toContain(`; k1: d=${domain} s=sel1 ${algorithm}, active, ${keyDir}`);
      const published = zoneFromRecords(show.stdout);
      expect(published).toEqual(zoneFromRecords(gen.stdout));
      Object.assign(dns.zone, published);

      const test = await runCliAsync(['keys', 'test', '--config', cfg.config]);
      expect(test.stderr).toBe('');
      expect(test.stdout).toMatch(new RegExp(`^ok +${record.replace(/\./g, '\\.')} \\(k1, active, ${algorithm}\\): KEY_OK `));
      expect(test.status).toBe(0);
      expect(dns.queries.some((q) => q.name === record && q.type === 'TXT')).toBe(true);

      const check = await runCliAsync(['config', 'check', '--dns', '--config', cfg.config]);
      expect([check.status, check.stdout.includes('KEY_OK')]).toEqual([0, true]);

      const sink = await startSink();
      const h = await startHarness({
        forwardPort: sink.port,
        banks: { default: { originating: true, stages: ['dkim-sign'] } },
        main: { dkimSign: { keyTableFile: cfg.keyTableFile, signingTableFile: cfg.signingTableFile } },
      });
      try {
        const c = await TestClient.connect(h.app.portOf('default'));
        const r = await c.send({ from: `a@${domain}`, to: ['b@example.net'], data: `From: a@${domain}\r\nTo: b@example.net\r\nSubject: generated key\r\n\r\nbody\r\n` });
        await c.quit();
        expect(r.final?.code).toBe(250);
        const signed = sink.received[0].data;
        const [perl, py] = await Promise.all([mailDkim(signed, dns.server), dkimpy(signed, dns.server)]);
        expect(py.map((s) => [s.selector, s.result])).toEqual([['sel1', 'pass']]);
        // Debian 12's Mail::DKIM has no Ed25519 (RFC 8463 4: unknown algorithms are ignored).
        if (type === 'rsa') expect(perl.map((s) => [s.selector, s.result])).toEqual([['sel1', 'pass']]);
        else expect(perl[0].detail).toMatch(/unsupported algorithm/);
      } finally {
        await h.close();
        await sink.close();
      }
    } finally {
      await dns.close();
    }
  });
});
