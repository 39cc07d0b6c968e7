/**
 * MIME header parameters (RFC 2045 5.1, RFC 2183, RFC 2231) with every value kept. libmime's
 * parseHeaderValue keeps one value per parameter, and its RFC 2231 form replaces the plain
 * one: `filename="evil.js"; filename*=utf-8''a.txt` reads as a.txt, while a client that reads
 * the first plain value saves evil.js. Mail clients differ in which they take, so a
 * banned-files check must see all: each plain occurrence, each `name*=` value, each set of
 * `name*0`, `name*1` continuations. RFC 2047 encoded-words in plain values are decoded
 * (Outlook writes them there). Lenient as clients are: an unquoted value runs to the next ";"
 * (spaces included), a parameter without "=" is skipped. Never throws.
 */
import libmime from 'libmime';

export interface ParsedValue {
  /** The value before the first ";" (the type, the disposition), trimmed, as written. */
  readonly value: string;
  /** Every value of each parameter (name lower case), in order, decoded; continuations joined. */
  readonly params: ReadonlyMap<string, readonly string[]>;
}

/** At most this many parameters are read from one field: a name is in the first few. */
const MAX_PARAMS = 200;

function decodeCharset(bytes: Buffer, charset: string): string {
  try {
    return new TextDecoder(charset || 'utf-8').decode(bytes);
  } catch {
    return bytes.toString('latin1');
  }
}

/** %XX escapes of an RFC 2231 extended value, as bytes. */
function percentBytes(text: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const h = text[i] === '%' ? Number.parseInt(text.slice(i + 1, i + 3), 16) : Number.NaN;
    if (/^[0-9a-f]{2}$/i.test(text.slice(i + 1, i + 3)) && Number.isFinite(h)) {
      out.push(h);
      i += 2;
    } else out.push(text.charCodeAt(i) & 0xff);
  }
  return Buffer.from(out);
}

function decodeWords(text: string): string {
  try {
    return libmime.decodeWords(text);
  } catch {
    return text;
  }
}

interface Raw {
  name: string;
  section: number | null;
  extended: boolean;
  value: string;
}

/** Splits "a; b=1; c="x;y"" into the value and raw parameters, quotes and escapes undone. */
function split(text: string): { value: string; raw: Raw[] } {
  let i = text.indexOf(';');
  const value = (i < 0 ? text : text.slice(0, i)).trim();
  const raw: Raw[] = [];
  while (i >= 0 && i < text.length && raw.length < MAX_PARAMS) {
    i++;
    const eq = text.indexOf('=', i);
    const semi = text.indexOf(';', i);
    if (eq < 0 || (semi >= 0 && semi < eq)) {
      i = semi;
      continue;
    }
    const attr = text.slice(i, eq).trim().toLowerCase();
    let j = eq + 1;
    while (text[j] === ' ' || text[j] === '\t') j++;
    let v = '';
    if (text[j] === '"') {
      for (j++; j < text.length && text[j] !== '"'; j++) v += text[j] === '\\' && j + 1 < text.length ? text[++j] : text[j];
      const next = text.indexOf(';', j);
      i = next;
    } else {
      const next = text.indexOf(';', j);
      v = (next < 0 ? text.slice(j) : text.slice(j, next)).trim();
      i = next;
    }
    const m = /^([^*\s]+)(?:\*(\d+))?(\*)?$/.exec(attr);
    if (!m) continue;
    raw.push({ name: m[1], section: m[2] === undefined ? null : Number(m[2]), extended: m[3] === '*', value: v });
  }
  return { value, raw };
}

export function parseParams(text: string): ParsedValue {
  const { value, raw } = split(text);
  const params = new Map<string, string[]>();
  const add = (name: string, v: string) => {
    const list = params.get(name) ?? [];
    list.push(v);
    params.set(name, list);
  };
  // Continuation sets: a section number seen again, or 0 again, starts a new set.
  const sets = new Map<string, { parts: Map<number, Raw> }[]>();
  for (const r of raw) {
    if (r.section === null) {
      if (!r.extended) add(r.name, decodeWords(r.value));
      else {
        const q = /^([^']*)'[^']*'(.*)$/s.exec(r.value);
        add(r.name, q ? decodeCharset(percentBytes(q[2]), q[1]) : decodeWords(r.value));
      }
      continue;
    }
    const list = sets.get(r.name) ?? [];
    let set = list[list.length - 1];
    if (!set || set.parts.has(r.section)) {
      set = { parts: new Map() };
      list.push(set);
    }
    set.parts.set(r.section, r);
    sets.set(r.name, list);
  }
  for (const [name, list] of sets) {
    for (const set of list) {
      const ordered = [...set.parts.entries()].sort((a, b) => a[0] - b[0]).map(([, r]) => r);
      // RFC 2231 4.1: the charset is in section 0 only; extended sections are percent-encoded.
      let charset = 'utf-8';
      const bytes: Buffer[] = [];
      for (const [k, r] of ordered.entries()) {
        if (!r.extended) bytes.push(Buffer.from(r.value, 'latin1'));
        else {
          let v = r.value;
          const q = k === 0 ? /^([^']*)'[^']*'(.*)$/s.exec(v) : null;
          if (q) {
            charset = q[1] || charset;
            v = q[2];
          }
          bytes.push(percentBytes(v));
        }
      }
      add(name, decodeCharset(Buffer.concat(bytes), charset));
    }
  }
  return { value, params };
}
