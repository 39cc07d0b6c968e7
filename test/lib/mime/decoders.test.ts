/**
 * The streaming transfer-encoding decoders give, whatever the chunking, what the whole-buffer
 * decoders give: Buffer's base64 and libqp (the library mailparser decodes with).
 */
import fc from 'fast-check';
import { decoderFor } from '../../../src/lib/mime/decoders';

/** libqp (mailparser's quoted-printable codec, no type declarations of its own). */
const libqp = require('libqp') as { encode(b: Buffer): string; wrap(s: string, width: number): string; decode(s: string): Buffer };

function chunked(encoding: string, text: Buffer, cuts: number[]): Buffer {
  const d = decoderFor(encoding);
  const out: Buffer[] = [];
  let at = 0;
  for (const c of [...cuts].sort((a, b) => a - b)) {
    out.push(d.push(text.subarray(at, Math.max(at, c))));
    at = Math.max(at, c);
  }
  out.push(d.push(text.subarray(at)), d.end());
  return Buffer.concat(out);
}

describe('transfer-encoding decoders', () => {
  it('decode base64 split anywhere, line breaks included', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.array(fc.nat(900), { maxLength: 6 }), (bytes, cuts) => {
        const encoded = Buffer.from(
          (
            Buffer.from(bytes)
              .toString('base64')
              .match(/.{1,76}/g) ?? []
          ).join('\r\n'),
        );
        expect(chunked('base64', encoded, cuts).equals(Buffer.from(bytes))).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it('decode quoted-printable split anywhere, soft breaks and escapes included', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.array(fc.nat(1500), { maxLength: 6 }), (bytes, cuts) => {
        const encoded = Buffer.from(libqp.wrap(libqp.encode(Buffer.from(bytes)), 76));
        expect(chunked('quoted-printable', encoded, cuts).equals(libqp.decode(encoded.toString()))).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it('keep a broken quoted-printable escape as written', () => {
    expect(chunked('quoted-printable', Buffer.from('a=ZZb=4'), []).toString()).toBe('a=ZZb=4');
  });

  it('pass unknown encodings through', () => {
    expect(chunked('x-uuencode', Buffer.from('begin 644 x'), [3]).toString()).toBe('begin 644 x');
  });

  it('decode base64 with padding, junk and line breaks anywhere as the group-by-group reading does, split anywhere', () => {
    // The reading decoders.ts promises: characters outside the alphabet skipped, "=" ending an incomplete group.
    const oracle = (text: string): Buffer => {
      const out: Buffer[] = [];
      let clean = '';
      for (const ch of text) {
        if (/[A-Za-z0-9+/]/.test(ch)) clean += ch;
        else if (ch === '=' && clean.length % 4 !== 0) {
          out.push(Buffer.from(clean, 'base64'));
          clean = '';
        }
      }
      out.push(Buffer.from(clean.slice(0, clean.length - (clean.length % 4)), 'base64'));
      const rest = clean.slice(clean.length - (clean.length % 4));
      if (rest.length > 1) out.push(Buffer.from(rest, 'base64'));
      return Buffer.concat(out);
    };
    const piece = fc.oneof(
      fc.uint8Array({ maxLength: 120 }).map((b) => Buffer.from(b).toString('base64')),
      fc.constantFrom('\r\n', '\n', '\r', '=', '==', ' ', '\t', '*', '-', '\x00', '\xe9'),
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 12 }), fc.array(fc.nat(1500), { maxLength: 6 }), (pieces, cuts) => {
        const text = pieces.join('');
        expect(chunked('base64', Buffer.from(text, 'latin1'), cuts)).toEqual(oracle(text));
      }),
      { numRuns: 1000 },
    );
  });

  it('go on after padding in the middle of a base64 part, each glued body from its own alignment, split anywhere', () => {
    const second = Buffer.from('PK\x03\x04hello', 'latin1');
    const glued = Buffer.from(`QQ==\r\n${second.toString('base64')}`);
    const expected = Buffer.concat([Buffer.from('A'), second]);
    for (let cut = 0; cut <= glued.length; cut++) expect(chunked('base64', glued, [cut])).toEqual(expected);
  });
});
