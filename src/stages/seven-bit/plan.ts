/**
 * Decides, from the walked MIME structure, which byte ranges to rewrite so the message is
 * 7-bit (RFC 6152 for what 8BITMIME allows, RFC 2045 for the encodings):
 * - a leaf with 8-bit bytes, NUL or lines over 998 octets is re-encoded, quoted-printable
 *   for text/*, base64 for anything else, and its Content-Transfer-Encoding set;
 * - a part, multipart or message/rfc822 labelled 8bit/binary whose content is 7-bit after
 *   this is relabelled 7bit, so no later hop converts it again;
 * - multipart/signed with 8-bit content is left whole (re-encoding breaks the signature);
 * - a leaf already labelled base64/quoted-printable yet holding 8-bit bytes, 8-bit text in
 *   a preamble or epilogue, or an unknown encoding cannot be fixed here and is reported;
 * - a part the walker did not walk into (`opaque`, nesting deeper than sevenBit.maxMimeDepth,
 *   or the parts after the walker's part cap, left in the last part before it)
 *   is never changed, not even relabelled: with 8-bit content or an 8bit/binary label it is
 *   reported, as re-encoding it as a leaf would hide the parts inside it from the recipient.
 *
 * The tree is walked with a stack of its own, not by recursion, and whether a subtree holds
 * 8-bit content is worked out once for the whole tree: the work is linear in the parts, and
 * part paths ("body.2.1") are only made for what is reported.
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
  const context: Context = { plan, frames: [], eightBitBelow: null, root };
  const first = start(root, context);
  if (first === DESCEND) walkComposites(context);
  plan.edits.sort((a, b) => a.start - b.start);
  return plan;
}

const DESCEND = Symbol('descend');

/** A composite part being planned: which child comes next, and whether all so far are 7-bit. */
interface Frame {
  readonly part: Part;
  next: number;
  clean: boolean;
}

interface Context {
  readonly plan: SevenBitPlan;
  /** The composites from the root down to the part being planned. */
  readonly frames: Frame[];
  /** Parts whose subtree holds 8-bit content; made on the first multipart/signed. */
  eightBitBelow: Set<Part> | null;
  readonly root: Part;
}

/** Plans the composites on the stack depth first; each ends true when all of it will be 7-bit. */
function walkComposites(ctx: Context): void {
  const { frames } = ctx;
  while (frames.length) {
    const frame = frames[frames.length - 1];
    if (frame.next < frame.part.children.length) {
      const child = frame.part.children[frame.next++];
      const result = start(child, ctx);
      if (result !== DESCEND) frame.clean &&= result;
      continue;
    }
    frames.pop();
    const part = frame.part;
    const clean = frame.clean && !isDirty(part);
    if (clean && !isSevenBitLabel(part.transferEncoding)) label(part, '7bit', ctx.plan);
    if (frames.length) frames[frames.length - 1].clean &&= clean;
  }
}

/** Plans a part that needs no descent and says whether it will be 7-bit, or pushes a composite. */
function start(part: Part, ctx: Context): boolean | typeof DESCEND {
  const { plan } = ctx;
  plan.eightBitHeader ||= part.eightBitHeader;
  const dirty = isDirty(part);
  if (part.opaque) {
    // Labelled 8bit it stays so, and so do its containers: reported too, as a later hop may convert it.
    const clean = !dirty && isSevenBitLabel(part.transferEncoding);
    if (!clean) plan.unconvertible.push(`${pathOf(ctx)}: ${whyOpaque(part)}; left as it is`);
    return clean;
  }
  const composite = part.contentType.startsWith('multipart/') || part.children.length > 0;
  if (composite) {
    if (part.contentType === 'multipart/signed' && eightBitBelow(ctx).has(part)) {
      plan.signed.push(pathOf(ctx));
      return false;
    }
    if (dirty) plan.unconvertible.push(`${pathOf(ctx)}: 8-bit text outside the parts`);
    ctx.frames.push({ part, next: 0, clean: true });
    return DESCEND;
  }
  if (!dirty) {
    if (!isSevenBitLabel(part.transferEncoding)) label(part, '7bit', plan);
    return true;
  }
  if (!IDENTITY.includes(part.transferEncoding)) {
    plan.unconvertible.push(`${pathOf(ctx)}: ${part.transferEncoding} part with 8-bit bytes`);
    return false;
  }
  const encoding = part.contentType.startsWith('text/') ? 'quoted-printable' : 'base64';
  label(part, encoding, plan);
  plan.edits.push({ start: part.bodyStart, end: part.bodyEnd, replace: encoding === 'base64' ? encodeBase64 : encodeQuotedPrintable });
  return true;
}

/** "body", then the 1-based index of each part on the way down to the part being planned. */
function pathOf(ctx: Context): string {
  return ['body', ...ctx.frames.map((f) => f.next)].join('.');
}

function isDirty(part: Part): boolean {
  return part.eightBit || part.nul || part.longLine;
}

/** Every part with 8-bit content in it or below it: parts in document order, then children before parents. */
function eightBitBelow(ctx: Context): Set<Part> {
  if (ctx.eightBitBelow) return ctx.eightBitBelow;
  const order: Part[] = [];
  for (const stack = [ctx.root]; stack.length; ) {
    const part = stack.pop()!;
    order.push(part);
    for (const child of part.children) stack.push(child);
  }
  const dirty = new Set<Part>();
  for (let i = order.length - 1; i >= 0; i--) {
    const part = order[i];
    if (isDirty(part) || part.children.some((c) => dirty.has(c))) dirty.add(part);
  }
  ctx.eightBitBelow = dirty;
  return dirty;
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

/** Why the walker left a part opaque: the nesting depth, or the part cap (structure.ts MAX_MIME_PARTS) reached above it. */
function whyOpaque(part: Part): string {
  for (let p = part.parent; p; p = p.parent) if (p.ambiguous?.startsWith('more than')) return p.ambiguous.split(':')[0];
  return `MIME nesting deeper than ${part.depth}`;
}
