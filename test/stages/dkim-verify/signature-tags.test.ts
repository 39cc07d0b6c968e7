/**
 * The checks on a DKIM-Signature field before anything is hashed or looked up
 * (RFC 6376 3.5, 6.1.1), one broken tag at a time on an otherwise valid field.
 */
import { checkSignature } from '../../../src/lib/dkim/signature-tags';
import { makeField } from '../../../src/transaction/message';

const NOW = new Date('2026-06-01T00:00:00Z');
const VALID = { v: '1', a: 'rsa-sha256', c: 'relaxed/relaxed', d: 'example.org', s: 'sel', h: 'from:to:subject', bh: 'AAAA', b: 'BBBB' };

function check(over: Record<string, string | undefined>) {
  const tags = Object.entries({ ...VALID, ...over }).filter(([, v]) => v !== undefined);
  return checkSignature(makeField('DKIM-Signature', tags.map(([k, v]) => `${k}=${v}`).join('; ')), NOW);
}

test('a valid field is ready to verify, with its tags read', () => {
  expect(check({ l: '120', t: '1780000000', i: 'news@mail.example.org' })).toMatchObject({
    signAlgo: 'rsa',
    hashAlgo: 'sha256',
    headerCanon: 'relaxed',
    bodyCanon: 'relaxed',
    signedNames: ['from', 'to', 'subject'],
    bodyLength: 120,
    identityDomain: 'mail.example.org',
    i: 'news@mail.example.org',
  });
});

test('c= defaults to simple/simple and "c=relaxed" means relaxed/simple', () => {
  expect(check({ c: undefined })).toMatchObject({ headerCanon: 'simple', bodyCanon: 'simple' });
  expect(check({ c: 'relaxed' })).toMatchObject({ headerCanon: 'relaxed', bodyCanon: 'simple' });
});

test.each([
  ['an unknown algorithm', { a: 'rsa-sha512' }, 'unknown algorithm'],
  ['an unknown canonicalization', { c: 'nofws/simple' }, 'unknown canonicalization'],
  ['v=2', { v: '2' }, 'incompatible version'],
  ['a non-numeric l=', { l: '12a' }, 'signature syntax error'],
  ['a 13-digit t=', { t: '1234567890123' }, 'signature syntax error'],
  ['an empty h= list', { h: ' : ' }, 'signature syntax error'],
  ['a d= that is no domain name', { d: 'example_org' }, 'signature syntax error'],
  ['a q= without dns/txt', { q: 'http/well-known' }, 'unsupported query method'],
  ['an x= not after t=', { t: '1780000000', x: '1780000000' }, 'invalid expiration'],
])('%s is neutral, signature-syntax', (_what, over, comment) => {
  expect(check(over)).toEqual(expect.objectContaining({ result: 'neutral', reason: 'signature-syntax', comment }));
});

test('an i= outside d= is a permerror identity-mismatch', () => {
  expect(check({ i: 'someone@example.net' })).toMatchObject({ result: 'permerror', reason: 'identity-mismatch' });
});

test('an h= without From is a permerror from-not-signed', () => {
  expect(check({ h: 'to:subject' })).toMatchObject({ result: 'permerror', reason: 'from-not-signed' });
});

test('an x= in the past is a permerror signature-expired', () => {
  expect(check({ t: '1700000000', x: '1700000600' })).toMatchObject({ result: 'permerror', reason: 'signature-expired' });
});

test('tag names are case-sensitive: "D=" is not d=, so d= is missing: permerror', () => {
  expect(check({ d: undefined, D: 'example.org' })).toMatchObject({ result: 'permerror', reason: 'missing-tag', comment: 'signature missing required tag d=' });
});

// RFC 6376 6.1.1: PERMFAIL (signature missing required tag); RFC 8601 2.7.1: permerror.
test.each(['v', 'a', 'b', 'bh', 'd', 'h', 's'])('a signature without %s= is a permerror missing-tag, not neutral', (tag) => {
  expect(check({ [tag]: undefined })).toEqual(expect.objectContaining({ result: 'permerror', reason: 'missing-tag', comment: `signature missing required tag ${tag}=` }));
});

test('an empty d= is still a syntax error (neutral), not a missing tag', () => {
  expect(check({ d: '' })).toMatchObject({ result: 'neutral', reason: 'signature-syntax' });
});
