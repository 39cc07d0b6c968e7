import { generateKeyPairSync, verify } from 'node:crypto';
import { formatUnsigned, selectHeaderFields, signData, signedHeaderNames, type DkimSignatureInput } from '../../../src/lib/dkim/signature';
import { Message } from '../../../src/transaction/message';
import { memorySpool } from '../../../src/transaction/spool';

const msg = Message.parse(
  memorySpool(Buffer.from('Received: one\r\nFrom: a@example.com\r\nTo: x@example.net\r\nReceived: two\r\nTo: y@example.net\r\nSubject: s\r\n\r\nbody\r\n')),
);

describe('h= and the header hash input', () => {
  it('lists each signed name once per instance present and oversigned names once more, absent ones included', () => {
    expect(signedHeaderNames(msg.fields, ['From', 'to', 'subject', 'date', 'message-id'], ['from', 'to', 'date', 'reply-to'])).toEqual([
      'from',
      'from',
      'to',
      'to',
      'to',
      'subject',
      'date',
      'reply-to',
    ]);
  });

  it('picks instances from the bottom up and nothing for a name with none left (RFC 6376 5.4.2)', () => {
    const picked = selectHeaderFields(msg.fields, ['to', 'to', 'to', 'from']).map((f) => Message.value(f));
    expect(picked).toEqual(['y@example.net', 'x@example.net', 'a@example.com']);
  });

  it('folds the unsigned field at 78 columns, breaking a long h= after colons, and ends with b=', () => {
    const input = {
      algorithm: 'rsa-sha256',
      domain: 'example.com',
      selector: 'sel',
      headerCanon: 'relaxed',
      bodyCanon: 'relaxed',
      bodyHash: 'x'.repeat(44),
      signedNames: Array.from({ length: 30 }, (_, i) => `x-header-${i}`),
      timestamp: 1700000000,
      expiration: 1700003600,
    } as Omit<DkimSignatureInput, 'privateKey'> as DkimSignatureInput;
    const field = formatUnsigned(input);
    const lines = field.split('\r\n');
    expect(lines.every((l) => l.length <= 78)).toBe(true);
    expect(lines.slice(1).every((l) => l.startsWith(' '))).toBe(true);
    expect(field.endsWith(' b=')).toBe(true);
    expect(field.replace(/\r\n /g, '')).toContain(`h=${input.signedNames.join(':')};`);
    expect(field).toMatch(/^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=example\.com;/);
    expect(field).toContain('t=1700000000; x=1700003600;');
  });
});

describe('signData', () => {
  const data = Buffer.from('from:alice@example.test\r\ndkim-signature:v=1; b=', 'latin1');

  it.each([1024, 2048, 3072])('makes an RSA-%i signature that verifies (up to 2048 bits on the event loop, larger in the pool)', async (bits) => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: bits });
    const sig = await signData('rsa-sha256', privateKey, data);
    expect(sig.length).toBe(bits / 8);
    expect(verify('sha256', data, publicKey, sig)).toBe(true);
  });

  it('rejects, never throws, when the key does not fit the algorithm (an ed25519 key for rsa-sha256)', async () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    let signing: Promise<Buffer> | undefined;
    expect(() => (signing = signData('rsa-sha256', privateKey, data))).not.toThrow();
    await expect(signing).rejects.toThrow();
  });
});
