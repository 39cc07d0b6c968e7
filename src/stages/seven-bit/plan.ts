/**
 * Decides, from the walked MIME structure, which byte ranges to rewrite so the message is
 * 7-bit (RFC 6152 for what 8BITMIME allows, RFC 2045 for the encodings):
 * - a leaf with 8-bit bytes, NUL or lines over 998 octets is re-encoded, quoted-printable
 *   for text/*, base64 for anything else, and its Content-Transfer-Encoding set;
 * - a part, multipart or message/rfc822 labelled 8bit/binary whose content is 7-bit after
 *   this is relabelled 7bit, so no later hop converts it again;
 * - multipart/signed with 8-bit content is left whole (re-encoding breaks the signature);
 * - a leaf already labelled base64/quoted-printable yet holding 8-bit bytes, 8-bit text in
 *   a preamble or epilogue, or an unknown encoding cannot be fixed here and is reported.
 */
import type { Part } from '../../lib/mime/structure';
import { replaceWith, type Edit } from '../../lib/mime/splice';
import { encodeBase64, encodeQuotedPrintable } from '../../lib/mime/encoders';

export type TransferEncoding = '7bit' | 'quoted-printable' | 'base64';

export interface SevenBitPlan {
  readonly edits: Edit[];
  /** The top-level Content-Transfer-Encoding, when it changes (the top header is the Message's). */
  topEncoding: TransferEncoding | null;
  readonly counts: Record<TransferEncoding, number>;
  eightBitHeader: boolean;
  readonly signed: string[];
  readonly unconvertible: string[];
}

const IDENTITY = ['7bit', '8bit', 'binary'];

export function planSevenBit(root: Part): SevenBitPlan {
  const plan: SevenBitPlan = { edits: [], topEncoding: null, counts: { '7bit': 0, 'quoted-printable': 0, base64: 0 }, eightBitHeader: false, signed: [], unconvertible: [] };
  visit(root, plan, 'body');
  plan.edits.sort((a, b) => a.start - b.start);
  return plan;
}

/** Plans one entity and everything in it; true when all of it will be 7-bit. */
function visit(part: Part, plan: SevenBitPlan, path: string): boolean {
  plan.eightBitHeader ||= part.eightBitHeader;
  const dirty = part.eightBit || part.nul || part.longLine;
  const composite = part.contentType.startsWith('multipart/') || part.children.length > 0;
  if (composite) {
    if (part.contentType === 'multipart/signed' && hasEightBit(part)) {
      plan.signed.push(path);
      return false;
    }
    if (dirty) plan.unconvertible.push(`${path}: 8-bit text outside the parts`);
    const clean = part.children.map((c, i) => visit(c, plan, `${path}.${i + 1}`)).every(Boolean) && !dirty;
    if (clean && !isSevenBitLabel(part.transferEncoding)) label(part, '7bit', plan);
    return clean;
  }
  if (!dirty) {
    if (!isSevenBitLabel(part.transferEncoding)) label(part, '7bit', plan);
    return true;
  }
  if (!IDENTITY.includes(part.transferEncoding)) {
    plan.unconvertible.push(`${path}: ${part.transferEncoding} part with 8-bit bytes`);
    return false;
  }
  const encoding = part.contentType.startsWith('text/') ? 'quoted-printable' : 'base64';
  label(part, encoding, plan);
  plan.edits.push({ start: part.bodyStart, end: part.bodyEnd, replace: encoding === 'base64' ? encodeBase64 : encodeQuotedPrintable });
  return true;
}

function label(part: Part, encoding: TransferEncoding, plan: SevenBitPlan): void {
  plan.counts[encoding]++;
  if (!part.parent) {
    plan.topEncoding = encoding;
    return;
  }
  const field = Buffer.from(`Content-Transfer-Encoding: ${encoding}\r\n`);
  const range = part.transferEncodingField ?? { start: part.headerEnd, end: part.headerEnd };
  plan.edits.push({ start: range.start, end: range.end, replace: replaceWith(field) });
}

function isSevenBitLabel(encoding: string): boolean {
  return !['8bit', 'binary'].includes(encoding);
}

function hasEightBit(part: Part): boolean {
  return part.eightBit || part.nul || part.longLine || part.children.some(hasEightBit);
}
