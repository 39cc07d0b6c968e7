import fc from 'fast-check';
import { decodeXtext, encodeXtext, isXtext, validEnvid, validOrcpt } from '../../../src/lib/envelope/xtext';

describe('xtext (RFC 3461 §4)', () => {
  it('decodes what it encodes, for any text', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 60 }), (text) => {
        const encoded = encodeXtext(text);
        expect(isXtext(encoded)).toBe(true);
        expect(decodeXtext(encoded)).toBe(text);
      }),
      { numRuns: 500 },
    );
  });

  it('encodes only "+", "=", space, controls and non-ASCII; every other printable character is itself', () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(...'!"#$%&\'()*,-./0123456789:;<>?@ABCxyz[\\]^_`{|}~'), maxLength: 40 }), (text) => {
        expect(encodeXtext(text)).toBe(text);
      }),
    );
    expect(encodeXtext('bob+tag=1 x\n')).toBe('bob+2Btag+3D1+20x+0A');
    expect(encodeXtext('é')).toBe('+C3+A9');
  });

  it('never yields a space, "=" or a control character, so an encoded value cannot add a parameter', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }), (text) => {
        expect(encodeXtext(text)).toMatch(/^[\x21-\x3c\x3e-\x7e]*$/);
      }),
    );
  });

  it('refuses what is not xtext: a "+" without two hex digits, a raw "=" or space', () => {
    for (const bad of ['bob+tag', 'a+2', 'a=b', 'a b', 'a+G0']) expect(decodeXtext(bad)).toBeNull();
    expect(decodeXtext('bob+2Btag')).toBe('bob+tag');
  });

  it('takes an ENVID as Postfix does: any non-empty xtext, longer than 100 or decoding to a control character included', () => {
    expect(validEnvid('a+2Bb+3Dc')).toBe(true);
    expect(validEnvid('x'.repeat(101))).toBe(true);
    expect(validEnvid('a+0D+0Ab')).toBe(true);
    expect(validEnvid('')).toBe(false);
    expect(validEnvid('a+zz')).toBe(false);
  });

  it('takes ORCPT as Postfix does: addr-type;xtext (utf-8: its own escapes), whatever it decodes to', () => {
    expect(validOrcpt('rfc822;bob+2Btag@example.net')).toBe(true);
    expect(validOrcpt('RFC822;bob@example.net')).toBe(true);
    expect(validOrcpt('rfc822;j+C3+A9@b.example')).toBe(true);
    expect(validOrcpt(`rfc822;${'a'.repeat(600)}@example.net`)).toBe(true);
    expect(validOrcpt('rfc822;bob+tag@example.net')).toBe(false);
    expect(validOrcpt('x400;a+ZZ')).toBe(false);
    expect(validOrcpt('utf-8;j\\x{F6}rg@example.net')).toBe(true);
    expect(validOrcpt('utf-8;a+b@example.net')).toBe(false);
    expect(validOrcpt(';a@example.net')).toBe(false);
    expect(validOrcpt('rfc822;')).toBe(false);
  });
});
