/**
 * The DKIM corpus (test/fixtures/messages/dkim, made by generate.py with dkimpy and
 * Mail::DKIM): every message is verified against the keys served by a loopback DNS server,
 * and the results are compared with the manifest (RFC 6376/8301/8463) and with Mail::DKIM's
 * and dkimpy's own verdicts on the same messages and the same DNS server.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { DkimKeyCache } from '../../../src/lib/dkim/public-keys';
import { createDnsResolver } from '../../../src/lib/dns';
import { verifyDkim } from '../../../src/lib/dkim/verify';
import { Message } from '../../../src/transaction/message';
import { memorySpool } from '../../../src/transaction/spool';
import { startDnsServer, type DnsServer, type Zone } from '../../helpers/dns-server';

const dir = path.resolve(__dirname, '../../fixtures/messages/dkim');
const zone = JSON.parse(readFileSync(path.resolve(__dirname, '../../fixtures/dns/dkim-corpus.json'), 'utf8')) as Zone;
interface Case {
  file: string;
  expect: { d: string; result: string; reason: string }[];
  mailDkim: string[];
  dkimpy: string[];
  why: string;
}
const manifest = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as Case[];

/** Where postseal follows RFC 8301 3.1 and RFC 6376 5.4, and Mail::DKIM 1.20230212 and dkimpy 1.1.4 do not. */
const deliberateDifferences = ['h-without-from.eml', 'rsa-sha1.eml'];

let dns: DnsServer;
beforeAll(async () => {
  dns = await startDnsServer(structuredClone(zone));
});
afterAll(() => dns.close());

const load = (file: string) => Message.parse(memorySpool(readFileSync(path.join(dir, file))));
const verify = (file: string, over: Partial<Parameters<typeof verifyDkim>[1]> = {}) =>
  verifyDkim(load(file), {
    resolver: createDnsResolver({ servers: [dns.server], timeoutMs: 1000, retries: 1, cacheMaxEntries: 1000, cacheMaxTtlSec: 300 }),
    keys: new DkimKeyCache(),
    maxSignatures: 10,
    minKeyBits: 1024,
    partialBody: 'pass',
    ...over,
  });

describe.each(manifest)('$file', (c) => {
  test(`gives ${c.expect.map((e) => `${e.result}/${e.reason}`).join(', ') || 'no signature'} (${c.why})`, async () => {
    const { signatures } = await verify(c.file);
    expect(signatures.map(({ d, result, reason }) => ({ d, result, reason }))).toEqual(c.expect);
  });
});

const scripts = path.resolve(__dirname, '../../fixtures/scripts');

/** One independent verifier's results for a message, top signature first. */
function independentVerdicts(command: string, script: string, file: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    // Asynchronously: the DNS server the verifier asks runs in this process.
    const child = execFile(command, [path.join(scripts, script), dns.server], (err, stdout) =>
      err
        ? reject(err)
        : resolve(
            stdout.trim()
              ? stdout
                  .trim()
                  .split('\n')
                  .map((l) => (JSON.parse(l) as { result: string }).result)
              : [],
          ),
    );
    child.stdin!.end(readFileSync(path.join(dir, file)));
  });
}

test('Mail::DKIM and dkimpy give the verdicts the manifest records; postseal agrees with one of them except where RFC 8301 3.1 or RFC 6376 5.4 say otherwise', async () => {
  const disagreements: string[] = [];
  for (const c of manifest) {
    const mailDkim = await independentVerdicts('perl', 'dkim-verify-maildkim.pl', c.file);
    const dkimpy = await independentVerdicts('/usr/bin/python3', 'dkim-verify-dkimpy.py', c.file);
    expect({ file: c.file, mailDkim, dkimpy }).toEqual({ file: c.file, mailDkim: c.mailDkim, dkimpy: c.dkimpy });
    const ours = c.expect.map((e) => e.result);
    const asMailDkim = ours.map((r) => (r === 'pass' || r === 'fail' ? r : 'invalid'));
    const asDkimpy = ours.map((r) => (r === 'pass' ? 'pass' : 'fail'));
    if (JSON.stringify(asMailDkim) !== JSON.stringify(mailDkim) && JSON.stringify(asDkimpy) !== JSON.stringify(dkimpy)) disagreements.push(c.file);
  }
  expect(disagreements.sort()).toEqual(deliberateDifferences);
});

test('a t=y key is reported as test mode', async () => {
  const { signatures } = await verify('t-y.eml');
  expect(signatures[0]).toMatchObject({ result: 'pass', testing: true });
});

test('an l= signature with unsigned appended text is neutral when partialBody is neutral', async () => {
  const { signatures } = await verify('l-appended.eml', { partialBody: 'neutral' });
  expect(signatures[0]).toMatchObject({ result: 'neutral', reason: 'partial-body' });
  expect(signatures[0].comment).toMatch(/body bytes not signed/);
});

test('signatures over maxSignatures are reported neutral without a key lookup', async () => {
  dns.queries.length = 0;
  const { signatures } = await verify('dual.eml', { maxSignatures: 1 });
  expect(signatures.map((s) => [s.result, s.reason])).toEqual([
    ['pass', 'ok'],
    ['neutral', 'signature-limit'],
  ]);
  expect(dns.queries.map((q) => q.name)).toEqual(['ed._domainkey.example.com']);
});

test('a key lookup that times out is a temperror', async () => {
  dns.zone['rsa._domainkey.example.com'] = { behaviour: 'timeout' };
  try {
    const resolver = createDnsResolver({ servers: [dns.server], timeoutMs: 100, retries: 0, cacheMaxEntries: 0, cacheMaxTtlSec: 0 });
    const { signatures } = await verify('relaxed-relaxed.eml', { resolver });
    expect(signatures[0]).toMatchObject({ result: 'temperror', reason: 'dns-temperror' });
  } finally {
    dns.zone['rsa._domainkey.example.com'] = zone['rsa._domainkey.example.com'];
  }
});

test('a signature without bh= is dkim=permerror (missing-tag), found without a key lookup', async () => {
  dns.queries.length = 0;
  const signed = readFileSync(path.join(dir, 'relaxed-relaxed.eml')).toString('latin1');
  const withoutBh = signed.replace(/\bbh=[^;]*;\s*/, '');
  expect(withoutBh).not.toBe(signed);
  const { signatures } = await verifyDkim(Message.parse(memorySpool(Buffer.from(withoutBh, 'latin1'))), {
    resolver: createDnsResolver({ servers: [dns.server], timeoutMs: 1000, retries: 0, cacheMaxEntries: 0, cacheMaxTtlSec: 0 }),
    keys: new DkimKeyCache(),
    maxSignatures: 10,
    minKeyBits: 1024,
    partialBody: 'pass',
  });
  expect(signatures[0]).toMatchObject({ d: 'example.com', result: 'permerror', reason: 'missing-tag', comment: 'signature missing required tag bh=' });
  expect(dns.queries).toEqual([]);
});
