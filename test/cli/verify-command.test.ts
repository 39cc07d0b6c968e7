import { execFile } from 'node:child_process';
import path from 'node:path';
import { corpusDir, corpusMessage, corpusZone } from '../helpers/auth';
import { cliMain, nodeBin } from '../helpers/cli';
import { startDnsServer, type DnsServer } from '../helpers/dns-server';

let dns: DnsServer;
beforeAll(async () => {
  dns = await startDnsServer({ ...structuredClone(corpusZone), 'example.com': { TXT: ['v=spf1 ip4:192.0.2.0/24 -all'] }, '_dmarc.example.com': { TXT: ['v=DMARC1; p=reject'] } });
});
afterAll(() => dns.close());

/** Asynchronously: the DNS server the command asks runs in this process. */
function verify(args: string[], stdin?: Buffer): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(nodeBin, [cliMain, 'verify', ...args], (err, stdout, stderr) => resolve({ code: err ? Number(err.code) : 0, stdout, stderr }));
    child.stdin!.end(stdin);
  });
}

test('prints the Authentication-Results it would add and a JSON line per signature', async () => {
  const r = await verify([
    '--dns',
    dns.server,
    '--authserv-id',
    'mx.example.net',
    '--client-ip',
    '192.0.2.5',
    '--helo',
    'mail.example.com',
    '--mail-from',
    'alice@example.com',
    path.join(corpusDir, 'dual.eml'),
  ]);
  expect(r.code).toBe(0);
  const lines = r.stdout.trimEnd().split('\n');
  expect(lines[0]).toBe('Authentication-Results: mx.example.net;\r');
  expect(r.stdout).toMatch(/\tdkim=pass header\.d=example\.com header\.i=@example\.com header\.s=ed header\.a=ed25519-sha256 header\.b=\S+;\r\n/);
  expect(r.stdout).toMatch(/\tspf=pass .* smtp\.mailfrom=alice@example\.com smtp\.helo=mail\.example\.com;\r\n/);
  expect(r.stdout).toMatch(/\tdmarc=pass .*header\.from=example\.com policy\.dmarc=reject;\r\n\tarc=none\r\n/);
  expect(lines.slice(-2).map((l) => JSON.parse(l))).toEqual([
    { d: 'example.com', s: 'ed', a: 'ed25519-sha256', result: 'pass', reason: 'ok' },
    { d: 'example.com', s: 'rsa', a: 'rsa-sha256', result: 'pass', reason: 'ok' },
  ]);
});

test('reads standard input and explains a failure with its reason', async () => {
  const r = await verify(['--dns', dns.server, '-'], corpusMessage('tampered-body.eml'));
  expect(r.code).toBe(0);
  expect(r.stdout).toContain('dkim=fail (body-hash-mismatch)');
  expect(r.stdout).toContain('spf=none (no client address from XFORWARD)');
  expect(JSON.parse(r.stdout.trimEnd().split('\n').pop()!)).toEqual({ d: 'example.com', s: 'rsa', a: 'rsa-sha256', result: 'fail', reason: 'body-hash-mismatch' });
});

test('a missing file exits 1, a missing argument is a usage error', async () => {
  expect((await verify(['--dns', dns.server, '/nonexistent/message.eml'])).code).toBe(1);
  const usage = await verify([]);
  expect(usage.code).toBe(2);
  expect(usage.stderr).toMatch(/verify needs one message file/);
});
