/**
 * DkimKeyCache against a real DNS server on loopback, with the resolver's own cache off so
 * every lookup is a query: the parsed key is reused while the record text stays the same,
 * a changed record is parsed anew, and DNS failures are never remembered.
 */
import { generateKeyPairSync } from 'node:crypto';
import { keyRecordText } from '../../../src/lib/dkim-key-record';
import { DkimKeyCache, type KeyLookup } from '../../../src/lib/dkim/public-keys';
import { createDnsResolver } from '../../../src/lib/dns';
import { startDnsServer, type DnsServer } from '../../helpers/dns-server';

const NAME = 'sel._domainkey.example.org';
const first = generateKeyPairSync('rsa', { modulusLength: 2048 });
const second = generateKeyPairSync('rsa', { modulusLength: 2048 });

let dns: DnsServer;
beforeAll(async () => {
  dns = await startDnsServer({ [NAME]: { TXT: [keyRecordText(first.publicKey)] } });
});
afterAll(() => dns.close());

const resolver = () => createDnsResolver({ servers: [dns.server], timeoutMs: 300, retries: 0, cacheMaxEntries: 0, cacheMaxTtlSec: 0 });
const lookup = (cache: DkimKeyCache, minKeyBits = 1024) => cache.lookup(resolver(), 'example.org', 'sel', { minKeyBits, hashAlgo: 'sha256' });
const keyOf = (r: KeyLookup) => (r.kind === 'key' ? r.key.key : null);

test('the same record text gives the same parsed key object, looked up through DNS each time', async () => {
  const cache = new DkimKeyCache();
  const queries = dns.queries.length;
  const a = await lookup(cache);
  const b = await lookup(cache);
  expect(a.kind).toBe('key');
  expect(keyOf(b)).toBe(keyOf(a));
  expect(dns.queries.length - queries).toBe(2);
  expect(keyOf(a)!.equals(first.publicKey)).toBe(true);
});

test('a changed record is parsed again and its new key used', async () => {
  const cache = new DkimKeyCache();
  await lookup(cache);
  dns.zone[NAME] = { TXT: [keyRecordText(second.publicKey)] };
  try {
    const r = await lookup(cache);
    expect(keyOf(r)!.equals(second.publicKey)).toBe(true);
    expect(keyOf(r)!.equals(first.publicKey)).toBe(false);
  } finally {
    dns.zone[NAME] = { TXT: [keyRecordText(first.publicKey)] };
  }
});

test('a DNS failure is a temperror and is not remembered: the next lookup finds the key', async () => {
  const cache = new DkimKeyCache();
  dns.zone[NAME] = { ...dns.zone[NAME], behaviour: 'servfail' };
  try {
    expect((await lookup(cache)).kind).toBe('temperror');
  } finally {
    dns.zone[NAME] = { TXT: [keyRecordText(first.publicKey)] };
  }
  expect((await lookup(cache)).kind).toBe('key');
});

test('a missing record is not-found, an empty p= is a revoked key, a short key keeps its code', async () => {
  const cache = new DkimKeyCache();
  expect((await cache.lookup(resolver(), 'example.org', 'nosuch', { minKeyBits: 1024, hashAlgo: 'sha256' })).kind).toBe('not-found');
  dns.zone[NAME] = { TXT: ['v=DKIM1; k=rsa; p='] };
  try {
    expect(await lookup(cache)).toEqual({ kind: 'invalid', code: 'EINVALIDVAL', revoked: true });
  } finally {
    dns.zone[NAME] = { TXT: [keyRecordText(first.publicKey)] };
  }
  expect(await lookup(cache, 4096)).toEqual({ kind: 'invalid', code: 'ESHORTKEY', revoked: false });
  // The stricter minimum is part of the memo's key: the usual one still finds the key.
  expect((await lookup(cache)).kind).toBe('key');
});
