/**
 * Streaming Content-Transfer-Encoding decoders (RFC 2045 6.7 quoted-printable, 6.8 base64)
 * for reading what a part holds: chunk in, decoded bytes out, a partial group or escape
 * carried to the next chunk. Lenient, as mail readers are: characters outside the base64
 * alphabet are skipped, padding ends a group and decoding goes on after it, a broken "=" escape in quoted-printable is kept as it is. A few lines
 * each, over Buffer's own base64 decoder: the libraries that do this (libbase64, libqp) are
 * Transform streams, an object and a stream per part, where a message may have 10,000 parts.
 */

export interface Decoder {
  push(chunk: Buffer): Buffer;
  end(): Buffer;
}

const EMPTY = Buffer.alloc(0);

/** Whether a byte is in the base64 alphabet (padding excluded). */
const B64 = new Uint8Array(256);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/') B64[c.charCodeAt(0)] = 1;

/** A chunk of only the alphabet and line breaks: no padding, nothing to skip. */
const PLAIN_LINES = /^[A-Za-z0-9+/\r\n]*$/;
const LINE_BREAKS = /[\r\n]+/g;

/**
 * Padding ends a group, not the part: bodies glued together ("QQ==" then more base64) decode
 * as both, each from its own alignment. Perl's MIME::Base64 and Python stop at the first "=";
 * a checker that did would miss what a client that goes on (and the file(1) of the recipient
 * after a save) sees, so this goes on: it sees what either reading shows.
 */
class Base64Decoder implements Decoder {
  private rest = '';

  push(chunk: Buffer): Buffer {
    const text = chunk.toString('latin1');
    // Nearly every chunk is lines of the alphabet: the line breaks go natively, with no walk
    // char by char (that walk was a quarter of the MIME read's time on a 20 KB attachment).
    if (PLAIN_LINES.test(text)) return this.decodeWhole(this.rest + (text.includes('\n') || text.includes('\r') ? text.replace(LINE_BREAKS, '') : text));
    const out: Buffer[] = [];
    let clean = this.rest;
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (B64[c]) continue;
      clean += text.slice(start, i);
      start = i + 1;
      // "=": the group so far is complete; what follows starts a new one.
      if (c === 0x3d && clean.length % 4 !== 0) {
        out.push(Buffer.from(clean, 'base64'));
        clean = '';
      }
    }
    clean += text.slice(start);
    const last = this.decodeWhole(clean);
    if (last.length) out.push(last);
    return out.length === 0 ? EMPTY : out.length === 1 ? out[0] : Buffer.concat(out);
  }

  /** The whole groups of `clean` (alphabet only) decoded; the rest is kept for the next chunk. */
  private decodeWhole(clean: string): Buffer {
    const whole = clean.length - (clean.length % 4);
    this.rest = clean.slice(whole);
    return whole > 0 ? Buffer.from(clean.slice(0, whole), 'base64') : EMPTY;
  }

  end(): Buffer {
    const rest = this.rest;
    this.rest = '';
    return rest.length > 1 ? Buffer.from(rest, 'base64') : EMPTY;
  }
}

const HEX = (c: number) => (c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x41 && c <= 0x46 ? c - 0x37 : c >= 0x61 && c <= 0x66 ? c - 0x57 : -1);

class QuotedPrintableDecoder implements Decoder {
  private held: Buffer = EMPTY;

  push(chunk: Buffer): Buffer {
    const data = this.held.length ? Buffer.concat([this.held, chunk]) : chunk;
    // An "=" near the end (an escape cut in two, or blanks before the line end of a soft
    // break) may continue in the next chunk; hold it back, but never more than a line's worth.
    let cut = data.length;
    const eq = data.lastIndexOf(0x3d);
    if (eq >= 0 && data.length - eq <= MAX_HELD && (data.length - eq < 3 || onlyBlanks(data, eq + 1))) cut = eq;
    this.held = Buffer.from(data.subarray(cut));
    return decodeQp(data.subarray(0, cut), false);
  }

  end(): Buffer {
    const out = decodeQp(this.held, true);
    this.held = EMPTY;
    return out;
  }
}

const MAX_HELD = 1000;

function onlyBlanks(data: Buffer, from: number): boolean {
  for (let i = from; i < data.length; i++) if (data[i] !== 0x20 && data[i] !== 0x09 && data[i] !== 0x0d) return false;
  return true;
}

/** Decodes whole escapes; a soft line break ("=" then optional blanks and a line end) is dropped. */
function decodeQp(data: Buffer, last: boolean): Buffer {
  const out = Buffer.allocUnsafe(data.length);
  let o = 0;
  for (let i = 0; i < data.length; i++) {
    const b = data[i];
    if (b !== 0x3d) {
      out[o++] = b;
      continue;
    }
    const h = HEX(data[i + 1] ?? -1);
    const l = HEX(data[i + 2] ?? -1);
    if (h >= 0 && l >= 0) {
      out[o++] = (h << 4) | l;
      i += 2;
      continue;
    }
    let j = i + 1;
    while (data[j] === 0x20 || data[j] === 0x09) j++;
    if (data[j] === 0x0d && data[j + 1] === 0x0a) {
      i = j + 1;
      continue;
    }
    if (data[j] === 0x0a) {
      i = j;
      continue;
    }
    if (j >= data.length && last) break;
    out[o++] = b;
  }
  return out.subarray(0, o);
}

class Identity implements Decoder {
  push(chunk: Buffer): Buffer {
    return chunk;
  }
  end(): Buffer {
    return EMPTY;
  }
}

/** The decoder for a Content-Transfer-Encoding (lower case); unknown ones pass bytes as they are. */
export function decoderFor(transferEncoding: string): Decoder {
  if (transferEncoding === 'base64') return new Base64Decoder();
  if (transferEncoding === 'quoted-printable') return new QuotedPrintableDecoder();
  return new Identity();
}
