import { createHash, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { BodyCanonicalizer, canonicalizeHeader, type BodyCanonicalization } from '../../../src/lib/dkim/canonicalization';
import { selectHeaderFields, signData } from '../../../src/lib/dkim/signature';
import { Message } from '../../../src/transaction/message';
import { memorySpool } from '../../../src/transaction/spool';

function body(canon: BodyCanonicalization, ...chunks: string[]): string {
  const out: Buffer[] = [];
  const c = new BodyCanonicalizer(canon, (b) => out.push(b));
  for (const chunk of chunks) c.update(Buffer.from(chunk, 'latin1'));
  c.end();
  expect(c.length).toBe(Buffer.concat(out).length);
  return Buffer.concat(out).toString('latin1');
}

/** Every way of cutting the input into two chunks gives the same result as one chunk. */
function bodyInAllSplits(canon: BodyCanonicalization, input: string): string {
  const whole = body(canon, input);
  for (let i = 1; i < input.length; i++) expect(body(canon, input.slice(0, i), input.slice(i))).toBe(whole);
  return whole;
}

// RFC 6376 3.4.5, the example message.
const exampleHeader = ['A: X\r\n', 'B : Y\t\r\n\tZ  \r\n'];
const exampleBody = ' C \r\nD \t E\r\n\r\n\r\n';

describe('DKIM canonicalization', () => {
  it('relaxed header canonicalization gives the RFC 6376 3.4.5 example result', () => {
    expect(exampleHeader.map((h) => canonicalizeHeader(Buffer.from(h), 'relaxed').toString()).join('')).toBe('a:X\r\nb:Y Z\r\n');
  });

  it('simple header canonicalization leaves the RFC 6376 example fields unchanged', () => {
    expect(exampleHeader.map((h) => canonicalizeHeader(Buffer.from(h), 'simple').toString()).join('')).toBe(exampleHeader.join(''));
  });

  it('relaxed body canonicalization gives the RFC 6376 3.4.5 example result, however the body is chunked', () => {
    expect(bodyInAllSplits('relaxed', exampleBody)).toBe(' C\r\nD E\r\n');
  });

  it('relaxed: chunks of lines that are canonical already give what line-by-line work gives', () => {
    // Byte by byte never takes the whole-lines path, so it is the reference.
    const oneByOne = (input: string) => body('relaxed', ...input.split(''));
    const inputs = [
      'a b\r\nc\r\n',
      '\r\n\r\na\r\n\r\n',
      'a\r\n\r\n\r\n',
      '\r\n\r\n',
      ' lead\r\n\r\nx\r\ntail',
      'canonical\r\nthen  two\r\nspaces \r\n',
      'a\r\nbare\nlf\r\n',
      'a\r\nlone\rcr\r\n',
    ];
    for (const input of inputs) {
      expect(bodyInAllSplits('relaxed', input)).toBe(oneByOne(input));
      expect(body('relaxed', 'x\r\n', input)).toBe(oneByOne(`x\r\n${input}`));
      expect(body('relaxed', 'x \t', input)).toBe(oneByOne(`x \t${input}`));
    }
  });

  it('simple body canonicalization gives the RFC 6376 3.4.5 example result, however the body is chunked', () => {
    expect(bodyInAllSplits('simple', exampleBody)).toBe(' C \r\nD \t E\r\n');
  });

  it('relaxed keeps single spaces, a leading one included, and drops trailing ones, however the line is chunked', () => {
    expect(bodyInAllSplits('relaxed', 'a b c \r\n d e\r\n  f\t g \r\n')).toBe('a b c\r\n d e\r\n f g\r\n');
  });

  it('an empty body is CRLF in simple and nothing in relaxed (RFC 6376 3.4.3, 3.4.4)', () => {
    expect(body('simple')).toBe('\r\n');
    expect(body('relaxed')).toBe('');
    expect(body('simple', '\r\n\r\n')).toBe('\r\n');
    expect(body('relaxed', ' \r\n\t\r\n')).toBe('');
  });

  it('treats bare LF as CRLF and ends an unterminated last line, as the reinjection sends it', () => {
    expect(bodyInAllSplits('simple', 'a\nb\r\nc')).toBe('a\r\nb\r\nc\r\n');
    expect(bodyInAllSplits('relaxed', 'a \nb')).toBe('a\r\nb\r\n');
  });

  it('keeps a bare CR as content', () => {
    expect(bodyInAllSplits('simple', 'a\rb\r\n')).toBe('a\rb\r\n');
  });

  it('keeps 8-bit bytes as they are', () => {
    expect(body('relaxed', 'gr\xfc\xdfe  \r\n')).toBe('gr\xfc\xdfe\r\n');
  });

  it('DomainKeys nofws removes all white space and drops trailing empty lines, the separator included when the body is empty', () => {
    expect(bodyInAllSplits('dk-nofws', ' a b \r\n \r\n')).toBe('\r\nab\r\n');
    expect(body('dk-nofws', '  \r\n')).toBe('');
    expect(canonicalizeHeader(Buffer.from('Subject : a\r\n b\r\n'), 'dk-nofws').toString()).toBe('Subject:ab\r\n');
  });

  it('DomainKeys simple keeps white space and counts the separator as the first body line', () => {
    expect(bodyInAllSplits('dk-simple', ' a \r\n\r\n')).toBe('\r\n a \r\n');
  });
});

describe('the RFC 8463 Ed25519 example', () => {
  // The RFC 8463 appendix A message with the RFC 8032 7.1 key, as corrected in dkimpy's test data.
  const raw = readFileSync(path.join(__dirname, '../../fixtures/messages/signing/rfc8463-signed.eml'));
  const msg = Message.parse(memorySpool(raw));
  const sig = msg.get('dkim-signature')[0];
  const tag = (name: string) => new RegExp(`(?:^|;)\\s*${name}=([^;]*)`).exec(Message.value(sig))![1].replace(/\s+/g, '');
  const seed = Buffer.from('nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=', 'base64');
  const key = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]), format: 'der', type: 'pkcs8' });

  it('has the body hash of its simple canonical body', () => {
    const hash = createHash('sha256');
    const c = new BodyCanonicalizer('simple', (b) => hash.update(b));
    c.update(raw.subarray(msg.bodyOffset));
    c.end();
    expect(hash.digest('base64')).toBe(tag('bh'));
  });

  it('gets the same ed25519 signature from the same header hash input, oversigned names included', async () => {
    const names = tag('h').split(':');
    expect(names).toEqual(['from', 'to', 'subject', 'date', 'message-id', 'from', 'subject', 'date']);
    const unsignedSig = sig.raw.toString('latin1').replace(/b=[^;]*$/, 'b=');
    const data = Buffer.concat([...selectHeaderFields(msg.fields, names).map((f) => canonicalizeHeader(f.raw, 'simple')), Buffer.from(unsignedSig, 'latin1')]);
    expect((await signData('ed25519-sha256', key, data)).toString('base64')).toBe(tag('b'));
  });
});
