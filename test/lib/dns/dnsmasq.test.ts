/**
 * The resolver against an independent DNS implementation (dnsmasq, Debian dnsmasq-base) on a
 * loopback port, so that our wire format is not only checked against our own test server.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { createDnsResolver } from '../../../src/lib/dns';

const DNSMASQ = '/usr/sbin/dnsmasq';

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

describe('resolver against dnsmasq', () => {
  let proc: ChildProcess;
  let port: number;
  beforeAll(async () => {
    // Installed by scripts/install-test-deps.sh (dnsmasq-base): missing is a failure, not a skip.
    if (!existsSync(DNSMASQ)) throw new Error(`${DNSMASQ} is missing: install dnsmasq-base (scripts/install-test-deps.sh)`);
    port = await freePort();
    proc = spawn(DNSMASQ, [
      '--keep-in-foreground',
      `--port=${port}`,
      '--listen-address=127.0.0.1',
      '--bind-interfaces',
      '--no-resolv',
      '--no-hosts',
      '--pid-file=',
      '--user=root',
      '--txt-record=sel._domainkey.example.net,v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=',
      '--host-record=host.example.net,192.0.2.7,2001:db8::7',
      '--cname=alias.example.net,host.example.net',
      '--mx-host=example.net,mx.example.net,5',
    ]);
    // Ready when it answers, not after a fixed pause (300 ms was too short for a CI run under load).
    const probe = createDnsResolver({ servers: [`127.0.0.1:${port}`], timeoutMs: 250, retries: 0, cacheMaxEntries: 0, cacheMaxTtlSec: 0 });
    const deadline = Date.now() + 15_000;
    while ((await probe.query('host.example.net', 'A')).kind !== 'answer') {
      if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`dnsmasq did not answer on port ${port} (exit ${proc.exitCode})`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }, 30_000);
  afterAll(() => {
    proc.kill();
  });

  test('TXT, A, AAAA, MX and a CNAME come back as dnsmasq serves them', async () => {
    const r = createDnsResolver({ servers: [`127.0.0.1:${port}`], timeoutMs: 1000, retries: 1, cacheMaxEntries: 0, cacheMaxTtlSec: 0 });
    expect(await r.query('sel._domainkey.example.net', 'TXT')).toMatchObject({ kind: 'answer', records: [['v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=']] });
    expect(await r.query('host.example.net', 'A')).toMatchObject({ kind: 'answer', records: ['192.0.2.7'] });
    expect(await r.query('host.example.net', 'AAAA')).toMatchObject({ kind: 'answer', records: ['2001:db8::7'] });
    expect(await r.query('alias.example.net', 'A')).toMatchObject({ kind: 'answer', records: ['192.0.2.7'] });
    expect(await r.query('example.net', 'MX')).toMatchObject({ kind: 'answer', records: [{ exchange: 'mx.example.net', priority: 5 }] });
  });
});
