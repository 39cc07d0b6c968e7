/**
 * Whether a message is sure to need nothing from the seven-bit stage, known without walking its
 * MIME structure: every body byte 7-bit and none a NUL, no body line over 998 octets, and no
 * Content-Transfer-Encoding field, at the top or in the body, that could say 8bit or binary.
 * Then no part is dirty and none is relabelled, whatever the structure (plan.ts: a part changes
 * only when it holds 8-bit bytes, NUL or a long line, or is labelled 8bit or binary). Most
 * originating mail is such; the walk cost it 0.1 ms per 20 KB message, these native scans a
 * tenth of that (bench/README.md, "The milter's CPU per message").
 *
 * Conservative on purpose, never the other way: "false" only means the walk decides. A line of
 * 999 octets counts as long with or without its CR; a label is suspect when its value holds a
 * comment's "(" (the walker drops comments, so "8(x)bit" is 8bit to it), an "8" or "binary", in
 * any case, and wherever the field name stands (in a part's header or not). A field that runs
 * past CARRY_MAX bytes at a chunk's end sends the message to the walk.
 */
import { isAscii } from 'node:buffer';
import { MAX_LINE_OCTETS } from '../../lib/mime/lines';

const NAME = 'content-transfer-encoding';
const NAME_RE = /content-transfer-encoding/gi;
const SUSPECT = /[(8]|binary/i;
/** The most of an unfinished field kept from one chunk for the next. */
const CARRY_MAX = 64 * 1024;

/** `labels`: the top-level Content-Transfer-Encoding values (unfolded). */
export async function needsNoChange(labels: readonly string[], body: AsyncIterable<Buffer>, signal: AbortSignal): Promise<boolean> {
  if (labels.some((v) => SUSPECT.test(v))) return false;
  let carriedLine = 0;
  let carry = '';
  for await (const chunk of body) {
    signal.throwIfAborted();
    if (!isAscii(chunk) || chunk.includes(0)) return false;
    carriedLine = shortLines(chunk, carriedLine);
    if (carriedLine < 0) return false;
    const text = carry + chunk.toString('latin1');
    const from = cleanLabels(text);
    if (from < 0) return false;
    carry = text.slice(from);
  }
  // The body's last field, if it ran to the end, has all its value now.
  return !SUSPECT.test(carry.slice(fieldValueAt(carry)));
}

/**
 * Checks every line of `chunk` that ends in it for the 998-octet limit, `carried` bytes of the
 * first one being in earlier chunks. The bytes of the last line carried on, or -1 for a line
 * that may be long. Jumps from line end to line end up to MAX_LINE_OCTETS apart, not line by line.
 */
function shortLines(chunk: Buffer, carried: number): number {
  let start = -carried;
  for (;;) {
    const nl = chunk.lastIndexOf(0x0a, start + MAX_LINE_OCTETS);
    if (nl >= 0 && nl >= start) {
      start = nl + 1;
      continue;
    }
    const rest = chunk.length - start;
    return rest > MAX_LINE_OCTETS ? -1 : rest;
  }
}

/**
 * Checks each Content-Transfer-Encoding field in `text` whose end is in it: -1 when one is
 * suspect; else where to carry on from in the next chunk: the start of a field that may go on,
 * or the last bytes, which may hold the start of the name.
 */
function cleanLabels(text: string): number {
  NAME_RE.lastIndex = 0;
  for (let m = NAME_RE.exec(text); m; m = NAME_RE.exec(text)) {
    const end = fieldEnd(text, m.index + NAME.length);
    if (end < 0) return text.length - m.index > CARRY_MAX ? -1 : m.index;
    if (SUSPECT.test(text.slice(m.index + NAME.length, end))) return -1;
    NAME_RE.lastIndex = end;
  }
  return Math.max(0, text.length - (NAME.length - 1));
}

/** The LF that ends the field whose value starts at `from` (one not followed by a space or tab), or -1 when `text` ends first. */
function fieldEnd(text: string, from: number): number {
  for (let nl = text.indexOf('\n', from); nl >= 0; nl = text.indexOf('\n', nl + 1)) {
    if (nl + 1 >= text.length) return -1;
    const next = text.charCodeAt(nl + 1);
    if (next !== 0x20 && next !== 0x09) return nl;
  }
  return -1;
}

/** Where the value of a field carried to the body's end starts (the whole carry if it holds no field name). */
function fieldValueAt(carry: string): number {
  const at = carry.toLowerCase().indexOf(NAME);
  return at < 0 ? carry.length : at + NAME.length;
}
