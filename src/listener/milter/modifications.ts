/**
 * The milter modifications that turn the message the MTA sent into the one the pipeline made,
 * derived by comparing the two Messages rather than by knowing what each stage did, so a new
 * stage needs nothing here. Header fields are matched in order by their bytes; what is left:
 *
 * - a field replaced in place (seven-bit's Content-Transfer-Encoding) is SMFIR_CHGHEADER with
 *   the field's occurrence number among fields of its name, so it keeps its position; not
 *   above the first field kept, where it is deleted and inserted on top (headerEdits);
 * - a field gone (a forged Authentication-Results) is SMFIR_CHGHEADER with an empty value,
 *   sent bottom-up so that no deletion renumbers a later one;
 * - a new field (DKIM-Signature, ARC-*, Authentication-Results, tag fields) is SMFIR_INSHEADER
 *   at its index in the final header, top-down after the deletions, so fields put on top come
 *   out on top (above Postfix's own Received:, as on the content-filter path) in the order the
 *   pipeline wrote them. Postfix counts that Received:, which milters do not see, in insert
 *   positions but not in SMFIR_CHGHEADER's per-name numbers (cleanup_milter.c), so a field
 *   inserted below the first field the milter saw gets one more;
 * - a changed body is SMFIR_REPLBODY in chunks of at most 65535 bytes.
 *
 * Postfix stores header fields with LF line ends and writes CRLF on the wire; the pipeline's
 * fields are CRLF, so folded values are sent with LF (as OpenDKIM does) and arrive as signed.
 * Without SMFIP_HDR_LEADSPC the MTA puts one space after the colon itself, so it is taken off.
 */
import { createHash } from 'node:crypto';
import { changeHeader, insertHeader, MAX_CHUNK, replaceBody } from '../../lib/milter/protocol';
import type { HeaderField, Message } from '../../transaction/message';

export interface Modifications {
  /** The SMFIR packets, in the order they must be sent. */
  readonly packets: Buffer[];
  /** For the log line: names of the fields inserted, changed and removed. */
  readonly added: string[];
  readonly changed: string[];
  readonly removed: string[];
  bodyReplaced: boolean;
}

export async function modificationsFor(original: Message, final: Message, leadSpace: boolean, signal?: AbortSignal): Promise<Modifications> {
  const out: Modifications = { packets: [], added: [], changed: [], removed: [], bodyReplaced: false };
  headerEdits(original.fields, final.fields, leadSpace, out);
  if (await bodyChanged(original, final, signal)) {
    out.bodyReplaced = true;
    for await (const chunk of final.openBody()) {
      signal?.throwIfAborted();
      for (let pos = 0; pos < chunk.length; pos += MAX_CHUNK) out.packets.push(replaceBody(chunk.subarray(pos, pos + MAX_CHUNK)));
    }
    // An empty new body still has to replace the old one.
    if (final.bodySize === 0) out.packets.push(replaceBody(Buffer.alloc(0)));
  }
  return out;
}

function headerEdits(before: readonly HeaderField[], after: readonly HeaderField[], leadSpace: boolean, out: Modifications): void {
  const matchOf = matchInOrder(before, after);
  const matched = new Set(matchOf.filter((j) => j >= 0));
  // Occurrence numbers (from 1) among fields of the same name, as the MTA counts them.
  const occurrence: number[] = [];
  const seen = new Map<string, number>();
  for (const f of before) {
    const n = (seen.get(f.key) ?? 0) + 1;
    seen.set(f.key, n);
    occurrence.push(n);
  }
  // Unmatched fields between the same two kept fields, of the same name, are changes in place.
  const changes = new Map<number, number>();
  const changedFinal = new Set<number>();
  let i = 0;
  let j = 0;
  while (i <= before.length || j <= after.length) {
    // Above the first kept field, a field of the pipeline's is one it put on top, and Postfix
    // has its Received: between the two: changed in place, ours would stay below that
    // Received: among the sender's fields (our Authentication-Results where a forged one
    // stood first). There it is deleted and inserted instead; a rewritten first field then
    // moves above the Received:, in the same order among the fields that are signed.
    const leading = i === 0 && j === 0;
    const gapO: number[] = [];
    while (i < before.length && matchOf[i] < 0) gapO.push(i++);
    const gapF: number[] = [];
    while (j < after.length && !matched.has(j)) gapF.push(j++);
    for (const o of leading ? [] : gapO) {
      const k = gapF.findIndex((f) => after[f].key === before[o].key && !changedFinal.has(f));
      if (k >= 0) {
        changes.set(o, gapF[k]);
        changedFinal.add(gapF[k]);
      }
    }
    if (i >= before.length && j >= after.length) break;
    // Step over the next kept pair together.
    i++;
    j++;
  }
  for (const [o, f] of changes) {
    out.packets.push(changeHeader(occurrence[o], before[o].name, milterValue(after[f], leadSpace)));
    out.changed.push(before[o].name);
  }
  for (let o = before.length - 1; o >= 0; o--) {
    if (matchOf[o] >= 0 || changes.has(o)) continue;
    out.packets.push(changeHeader(occurrence[o], before[o].name, Buffer.alloc(0)));
    out.removed.push(before[o].name);
  }
  // Postfix counts its own Received: field, which it does not show the milter, in insert
  // positions (cleanup_milter.c: "relative to the content as delivered"); it sits below the
  // fields put on top and above the first field the milter saw.
  let belowReceived = false;
  for (let f = 0; f < after.length; f++) {
    if (matched.has(f) || changedFinal.has(f)) {
      belowReceived = true;
      continue;
    }
    out.packets.push(insertHeader(belowReceived ? f + 1 : f, after[f].name, milterValue(after[f], leadSpace)));
    out.added.push(after[f].name);
  }
}

/**
 * For each field before, the index of the same bytes after, or -1: greedy and in order (every
 * match lies below the previous one), which is exact for what stages do (fields put on top,
 * fields removed, a field rewritten in place) and linear in the number of fields.
 */
function matchInOrder(before: readonly HeaderField[], after: readonly HeaderField[]): number[] {
  const where = new Map<string, number[]>();
  after.forEach((f, j) => {
    const key = f.raw.toString('latin1');
    const list = where.get(key);
    if (list) list.push(j);
    else where.set(key, [j]);
  });
  const cursor = new Map<string, number>();
  let last = -1;
  return before.map((f) => {
    const key = f.raw.toString('latin1');
    const list = where.get(key);
    if (!list) return -1;
    let c = cursor.get(key) ?? 0;
    while (c < list.length && list[c] <= last) c++;
    if (c >= list.length) return -1;
    cursor.set(key, c + 1);
    last = list[c];
    return last;
  });
}

/** The field's value as the MTA takes it: after the colon, LF line ends, no final line end. */
function milterValue(field: HeaderField, leadSpace: boolean): Buffer {
  const text = field.raw.toString('latin1');
  let value = text.slice(text.indexOf(':') + 1).replace(/\r?\n$/, '');
  if (!leadSpace && value.startsWith(' ')) value = value.slice(1);
  return Buffer.from(value.replace(/\r\n/g, '\n'), 'latin1');
}

async function bodyChanged(original: Message, final: Message, signal?: AbortSignal): Promise<boolean> {
  if (final.spool === original.spool && final.bodyOffset === original.bodyOffset) return false;
  if (final.bodySize !== original.bodySize) return true;
  const [a, b] = await Promise.all([digest(original.openBody(), signal), digest(final.openBody(), signal)]);
  return !a.equals(b);
}

async function digest(body: AsyncIterable<Buffer>, signal?: AbortSignal): Promise<Buffer> {
  const h = createHash('sha256');
  for await (const chunk of body) {
    signal?.throwIfAborted();
    h.update(chunk);
  }
  return h.digest();
}
