/**
 * How deep a message's MIME nests as clamd reads it: also inside message/rfc822 parts that were
 * encoded (base64 or quoted-printable), which RFC 2046 5.2.1 forbids and the walk therefore does
 * not enter, but which clamd decodes and reads as a message (and Outlook sends, forwarding as an
 * attachment). Measured with the real clamd: EICAR 20 levels deep inside one base64
 * message/rfc822 part of a plain multipart was OK, while the walk saw 2 levels.
 *
 * Each such part is decoded as a stream into a walk of its own (the parts all these walks make
 * are capped together at MAX_MIME_PARTS; nothing is kept in memory but the part trees), and so
 * are the encoded ones inside it. The
 * bytes decoded are capped at DECODE_FACTOR times the body, and the parts decoded at
 * MAX_ENCODED_MESSAGES, so that a message of many (nested) encoded parts cannot make the check
 * read the spool over and over: past either, or past the walk's depth cap, the depth is unknown
 * (Infinity), and the virus stage does not call the message scanned. Reads nothing from the bank; fails only with the signal's abort.
 */
import { decoderFor } from '../../lib/mime/decoders';
import { MAX_MIME_DEPTH, MAX_MIME_PARTS, MimeWalker, type Part, RFC2231_BOUNDARY, TWO_CONTENT_TYPES } from '../../lib/mime/structure';

/**
 * Encoded message/rfc822 parts decoded at most (amavisd's $MAXFILES): each is a read of the
 * spool from its offset, and 10,000 tiny ones would be 10,000 reads.
 */
const MAX_ENCODED_MESSAGES = 3000;

/** Bytes decoded at most, as a multiple of the body, plus DECODE_SLACK (a small body's parts). */
const DECODE_FACTOR = 3;
const DECODE_SLACK = 1 << 20;

export interface Nesting {
  /** The deepest entity, counting what encoded message/rfc822 parts hold; Infinity when unknown. */
  readonly depth: number;
  /**
   * How deep a piece (pieces.ts: each leaf at the top of a message of its own, one level down)
   * nests at most: 1, or more for an encoded message/rfc822 leaf, whose content stays as deep.
   */
  readonly pieceDepth: number;
  /**
   * Why clamd alone misreads a part inside an encoded message/rfc822 part (a 2231 boundary, two
   * Content-Type fields), or null: a piece carries that part encoded, as it is, so the pieces
   * do not scan it as readers see it either.
   */
  readonly misread: string | null;
}

/** The bytes of a stream from offset `from` on. */
type Open = (from: number) => AsyncIterable<Buffer>;

interface Budget {
  /** Decoded bytes left; below 0, the depth is unknown. */
  bytes: number;
  /** Parts the walks of encoded parts may still make, together (MAX_MIME_PARTS: the trees of a chain are held at once). */
  parts: number;
  /** Encoded parts that may still be decoded (MAX_ENCODED_MESSAGES). */
  messages: number;
  /** The first reason clamd alone misreads a part inside an encoded part (structure.ts), or null. */
  misread: string | null;
}

/** The nesting of the tree under `root`, walked from the bytes `open` gives (`size` of them). */
export async function nestingOf(root: Part, open: Open, size: number, signal: AbortSignal): Promise<Nesting> {
  const budget: Budget = { bytes: DECODE_FACTOR * size + DECODE_SLACK, parts: MAX_MIME_PARTS, messages: MAX_ENCODED_MESSAGES, misread: null };
  let depth = 0;
  let pieceDepth = 1;
  for (const part of partsOf(root)) {
    depth = Math.max(depth, part.opaque && part.depth >= MAX_MIME_DEPTH ? part.depth + 1 : part.depth);
    if (!isEncodedMessage(part)) continue;
    // The message inside lies one level below the part, as an unencoded one would.
    const inner = await innerDepth(part, open, MAX_MIME_DEPTH - part.depth - 1, budget, signal);
    if (inner === Infinity) return { depth: Infinity, pieceDepth: Infinity, misread: budget.misread };
    depth = Math.max(depth, part.depth + 1 + inner);
    pieceDepth = Math.max(pieceDepth, 2 + inner);
  }
  return { depth, pieceDepth, misread: budget.misread };
}

/** How deep the message inside an encoded message/rfc822 part nests (0: not multipart); Infinity past `left` levels or the budget. */
async function innerDepth(part: Part, open: Open, left: number, budget: Budget, signal: AbortSignal): Promise<number> {
  if (left < 1 || budget.bytes < 0 || --budget.messages < 0) return Infinity;
  const decoded = decodedOpen(part, open, budget);
  // A walk whose top is a message/rfc822 entity: the decoded message is its one child, depth 1.
  const walker = new MimeWalker('message/rfc822', '7bit', { maxDepth: left + 1, maxParts: budget.parts });
  let size = 0;
  for await (const chunk of decoded(0)) {
    signal.throwIfAborted();
    walker.push(chunk);
    size += chunk.length;
  }
  if (budget.bytes < 0) return Infinity;
  walker.end(size);
  let depth = 0;
  for (const p of partsOf(walker.root)) {
    // Past the depth cap, or the part cap (whose rest is not walked): unknown.
    if (p.opaque || p.ambiguous?.startsWith('more than')) return Infinity;
    budget.parts--;
    if (p.ambiguous === RFC2231_BOUNDARY || p.ambiguous === TWO_CONTENT_TYPES) budget.misread ??= p.ambiguous;
    depth = Math.max(depth, p.depth - 1);
    if (isEncodedMessage(p)) depth = Math.max(depth, p.depth + (await innerDepth(p, decoded, left - p.depth, budget, signal)));
    if (depth === Infinity) return Infinity;
  }
  return depth;
}

function isEncodedMessage(part: Part): boolean {
  return part.contentType === 'message/rfc822' && part.children.length === 0 && !part.opaque && !['7bit', '8bit', 'binary'].includes(part.transferEncoding);
}

function* partsOf(root: Part): Iterable<Part> {
  const stack = [root];
  while (stack.length) {
    const part = stack.pop()!;
    yield part;
    for (const child of part.children) stack.push(child);
  }
}

/**
 * The decoded body of `part` (its range of `open`'s bytes) as an Open. Decoded bytes cannot be
 * sought: an offset is reached by decoding from the start, and every byte decoded, skipped or
 * not, is charged to the budget (it ends the stream when spent), so that many encoded parts
 * inside one encoded part cannot make it decode that part over and over.
 */
function decodedOpen(part: Part, open: Open, budget: Budget): Open {
  return async function* (from: number) {
    const decoder = decoderFor(part.transferEncoding);
    let raw = part.bodyStart;
    let at = 0;
    const emit = function* (bytes: Buffer) {
      budget.bytes -= bytes.length;
      const skip = Math.max(from - at, 0);
      at += bytes.length;
      if (skip < bytes.length) yield bytes.subarray(skip);
    };
    for await (const chunk of open(part.bodyStart)) {
      const take = Math.min(chunk.length, part.bodyEnd - raw);
      raw += take;
      yield* emit(decoder.push(chunk.subarray(0, take)));
      if (budget.bytes < 0) return;
      if (raw >= part.bodyEnd) break;
    }
    yield* emit(decoder.end());
  };
}
