/**
 * `postseal keys test` for one key (amavisd testkeys, opendkim-testkey), as a receiver would
 * see it: the TXT record at <selector>._domainkey.<domain> through the configured resolver,
 * parsed by the verifier's own key-record parser (mailauth, strict RFC 6376 3.6.1 / RFC 8463),
 * its public key compared with the private key's, its flags and size; then a test message
 * signed by the dkim-sign signer and checked by the dkim-verify engine against that record.
 *
 * Results are data with stable codes (scripts and tests match the codes, not the text):
 * failures KEY_MISSING, KEY_DNS_TEMPERROR, KEY_AMBIGUOUS, KEY_REVOKED, KEY_TRUNCATED,
 * KEY_INVALID, KEY_MISMATCH, KEY_SIGNATURE_FAILED; warnings KEY_TESTING (t=y still set) and
 * KEY_WEAK (RSA under 2048 bits).
 */
import { createPublicKey } from 'node:crypto';
import { authorOf } from '../lib/author';
import { publicKeyValue } from '../lib/dkim-key-record';
import { DkimKeyCache, getPublicKey, type PublishedKey } from '../lib/dkim/public-keys';
import { mailauthResolver, type DnsResolver } from '../lib/dns';
import { signMessage, withSignatures, type SignatureOptions } from '../lib/dkim/sign';
import { verifyDkim } from '../lib/dkim/verify';
import { Message } from '../transaction/message';
import { memorySpool } from '../transaction/spool';
import type { SigningKey } from './key-store';

export type KeyTestCode =
  | 'KEY_OK'
  | 'KEY_TESTING'
  | 'KEY_WEAK'
  | 'KEY_MISSING'
  | 'KEY_DNS_TEMPERROR'
  | 'KEY_AMBIGUOUS'
  | 'KEY_REVOKED'
  | 'KEY_TRUNCATED'
  | 'KEY_INVALID'
  | 'KEY_MISMATCH'
  | 'KEY_SIGNATURE_FAILED';

export interface KeyTestNote {
  readonly code: KeyTestCode;
  readonly text: string;
}

export interface KeyTestResult {
  readonly key: SigningKey;
  /** <selector>._domainkey.<domain> */
  readonly record: string;
  /** false when any note is a failure; warnings alone keep it true. */
  readonly passed: boolean;
  readonly notes: readonly KeyTestNote[];
}

export interface KeyTestDeps {
  readonly resolver: DnsResolver;
  /** The signature options of the test signature (the default bank's dkimSign.signature). */
  readonly signature: SignatureOptions;
  readonly now?: Date;
}

const MIN_RSA_BITS = 1024;
const RECOMMENDED_RSA_BITS = 2048;
const WARNINGS: ReadonlySet<KeyTestCode> = new Set(['KEY_OK', 'KEY_TESTING', 'KEY_WEAK']);

export async function testKey(key: SigningKey, deps: KeyTestDeps): Promise<KeyTestResult> {
  const record = `${key.selector}._domainkey.${key.domain}`;
  const done = (...notes: KeyTestNote[]): KeyTestResult => ({ key, record, passed: notes.every((n) => WARNINGS.has(n.code)), notes });
  const fail = (code: KeyTestCode, text: string) => done({ code, text });

  const answer = await deps.resolver.query(record, 'TXT');
  if (answer.kind === 'temperror') return fail('KEY_DNS_TEMPERROR', `the lookup failed (${answer.reason}); try again, or check dns.servers`);
  if (answer.kind !== 'answer') {
    return fail('KEY_MISSING', `no TXT record (${answer.kind === 'nxdomain' ? 'NXDOMAIN' : 'the name has no TXT data'}); publish the record that postseal keys show prints`);
  }
  if (answer.records.length > 1) {
    return fail('KEY_AMBIGUOUS', `${answer.records.length} TXT records; a verifier may use any of them (RFC 6376 3.6.2.2): publish exactly one`);
  }
  const text = answer.records[0].join('');
  const expected = publicKeyValue(key.privateKey).p;
  const published = /(?:^|;)\s*p\s*=([^;]*)/.exec(text)?.[1].replace(/\s+/g, '');
  if (published === '') return fail('KEY_REVOKED', 'the record has an empty p=, which revokes the key (RFC 6376 3.6.1)');
  if (published !== undefined && published.length < expected.length && expected.startsWith(published)) {
    return fail(
      'KEY_TRUNCATED',
      `p= holds ${published.length} of the key's ${expected.length} characters: the record was cut (one TXT string holds at most 255 octets; publish it as several strings, as postseal keys show prints it)`,
    );
  }

  let found: PublishedKey;
  try {
    found = await getPublicKey('DKIM', record, MIN_RSA_BITS, mailauthResolver(deps.resolver), { strict: true, hashAlgo: 'sha256' });
  } catch (err) {
    return fail('KEY_INVALID', `verifiers cannot use the record: ${(err as Error).message}`);
  }
  if (!createPublicKey(found.publicKey).equals(createPublicKey(key.privateKey))) {
    const theirs = found.keyType === key.privateKey.asymmetricKeyType ? `another ${found.keyType} key` : `an ${found.keyType} key`;
    return fail('KEY_MISMATCH', `the record publishes ${theirs}, not the public half of ${key.keyFile}; publish the record that postseal keys show prints`);
  }

  const notes: KeyTestNote[] = [];
  if (found.testing) notes.push({ code: 'KEY_TESTING', text: 't=y is still set: receivers treat the domain as testing DKIM; remove it once mail verifies' });
  if (found.keyType === 'rsa' && (found.modulusLength ?? 0) < RECOMMENDED_RSA_BITS) {
    notes.push({ code: 'KEY_WEAK', text: `RSA key of ${found.modulusLength} bits; ${RECOMMENDED_RSA_BITS} is recommended (RFC 8301)` });
  }
  const signature = await testSignature(key, deps);
  if (signature) return done(signature, ...notes);
  return done(...(notes.length ? notes : [{ code: 'KEY_OK' as const, text: 'the record matches the key and a test message signed with it verifies' }]));
}

/** Signs a small message with the key alone and verifies it against the published record. */
async function testSignature(key: SigningKey, deps: KeyTestDeps): Promise<KeyTestNote | null> {
  const now = deps.now ?? new Date();
  const raw = [
    `From: postseal keys test <postmaster@${key.domain}>`,
    `To: postmaster@${key.domain}`,
    `Subject: postseal keys test ${key.selector}`,
    `Date: ${now.toUTCString()}`,
    `Message-ID: <keys-test.${now.getTime()}.${key.selector}@${key.domain}>`,
    '',
    'This message tests a DKIM key. It is never sent.',
    '',
  ].join('\r\n');
  const message = Message.parse(memorySpool(Buffer.from(raw)));
  const author = authorOf(message.get('from')[0]);
  // DomainKeys is left out: only the DKIM signature says anything about this record.
  const signed = await signMessage(message, [{ ...key, domainKeys: 'off' }], deps.signature, author, now, new AbortController().signal);
  const { signatures } = await verifyDkim(withSignatures(message, signed), {
    resolver: deps.resolver,
    keys: new DkimKeyCache(),
    maxSignatures: 1,
    minKeyBits: MIN_RSA_BITS,
    partialBody: 'pass',
    now,
  });
  const s = signatures[0];
  if (s?.result === 'pass') return null;
  return { code: 'KEY_SIGNATURE_FAILED', text: `a test message signed with the key does not verify: dkim=${s?.result ?? 'none'} (${s?.reason ?? 'no result'})` };
}

/** One line per key: status, record, key name, state and algorithm, then the notes. */
export function formatKeyTest(r: KeyTestResult): string {
  const status = !r.passed ? 'FAIL' : r.notes.some((n) => n.code !== 'KEY_OK') ? 'warn' : 'ok';
  const notes = r.notes.map((n) => `${n.code} ${n.text}`).join('; ');
  return `${status.padEnd(4)} ${r.record} (${r.key.name}, ${r.key.state}, ${r.key.algorithm}): ${notes}`;
}
