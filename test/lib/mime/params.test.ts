/**
 * Header parameters with every value kept: each plain occurrence, each RFC 2231 extended
 * value and each continuation set, decoded; what libmime folds into one value.
 */
import { parseParams } from '../../../src/lib/mime/params';

const all = (text: string, name: string) => parseParams(text).params.get(name);

describe('header parameters', () => {
  it('keeps a plain filename and the RFC 2231 one after it', () => {
    expect(all(`attachment; filename="evil.js"; filename*=utf-8''a.txt`, 'filename')).toEqual(['evil.js', 'a.txt']);
  });

  it('keeps a plain filename and a continuation set after it', () => {
    expect(all('attachment; filename="evil.js"; filename*0="a.t"; filename*1="xt"', 'filename')).toEqual(['evil.js', 'a.txt']);
  });

  it('keeps a repeated plain parameter, both values', () => {
    expect(all('attachment; filename="a.txt"; filename="evil.js"', 'filename')).toEqual(['a.txt', 'evil.js']);
  });

  it('decodes charset and percent escapes of extended continuations, and encoded-words in plain values', () => {
    expect(all(`attachment; filename*0*=utf-8''%E2%80%AEa; filename*1=".js"`, 'filename')).toEqual(['\u202ea.js']);
    expect(all('application/x; name="=?utf-8?B?ZXZpbC5qcw==?="', 'name')).toEqual(['evil.js']);
  });

  it('reads spaces around "=", and an unquoted value up to the next ";"', () => {
    expect(all('attachment; filename = "evil.js"', 'filename')).toEqual(['evil.js']);
    expect(all('attachment; filename=evil .js; size=3', 'filename')).toEqual(['evil .js']);
  });

  it('gives the type and both boundaries of a field that repeats it', () => {
    const p = parseParams('multipart/mixed; boundary="XX"; boundary="BB"');
    expect(p.value).toBe('multipart/mixed');
    expect(p.params.get('boundary')).toEqual(['XX', 'BB']);
  });

  it('reads a quoted ";" as part of the value', () => {
    expect(all('attachment; filename="a;b.txt"; x=1', 'filename')).toEqual(['a;b.txt']);
  });
});
