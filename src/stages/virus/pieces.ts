/**
 * A message larger than virus.maxScanBytes (clamd's StreamMaxLength, 25 MB by default), sent
 * to clamd in pieces instead of not at all: each piece is a MIME message of its own that
 * carries some of the original's parts as they are (their headers, encoding and bytes, so
 * clamd decodes them as in the whole message), as many whole parts as fit in maxScanBytes.
 * amavisd-new gets the same by decoding a message into its parts and scanning those.
 *
 * The pieces cover the whole body but the delimiter lines between sibling parts: every MIME
 * leaf (its header and body) and every other byte between leaves (multipart preambles and
 * epilogues, the headers of nested multiparts and message/rfc822 parts), the latter as
 * text/plain parts, so nothing a reader might decode (uuencode in a preamble) is left out. A single leaf or gap that is larger than maxScanBytes
 * by itself cannot be scanned: it is reported, and the stage's onTooBig decides as for a
 * whole message; the other pieces are still scanned (a virus elsewhere is still found).
 *
 * Each scan has its own boundary (random: the content cannot guess it and close our part), and
 * carries the message's own header fields on top (keptHeader), as the whole message would.
 *
 * Not cut, and so not scanned (`notCut`): a message whose MIME mail readers split differently
 * (structure.ts `ambiguous`: a delimiter in another case or with a CR after it, two boundary
 * parameters, ...), since a part Thunderbird shows could lie inside one of ours, where clamd,
 * given that part alone, would not decode it (given the whole message it did: it matches
 * boundaries loosely); a message of more than structure.ts MAX_MIME_PARTS parts; and one nested
 * past the walk's depth cap. A boundary in RFC 2231 form is the exception: readers agree on it
 * and clamd alone does not read it, so it is cut, and `clamdMisreads` says the virus stage should
 * scan the pieces even when the whole message is small. Two Content-Type fields are cut too but
 * stay `notCut` (the pieces are one reading, clamd's of the whole message the other): the virus
 * stage scans them after a clean whole scan, never instead of one.
 */
import { randomBytes } from 'node:crypto';
import { MAX_MIME_DEPTH, MimeWalker, type Part, RFC2231_BOUNDARY, TWO_CONTENT_TYPES } from '../../lib/mime/structure';
import { Message } from '../../transaction/message';
import { nestingOf } from './nesting';

/** A range of the body [start, end), and the header it goes with in a piece. */
export interface Piece {
  readonly start: number;
  readonly end: number;
  /** The header written before the bytes: none for a leaf, whose own header is in its range. */
  readonly header: string;
  /** For the log: the part's path ("2/1"), or "between <path> and <path>". */
  readonly what: string;
}

export interface Plan {
  /** The pieces of each scan, in body order. */
  readonly scans: Piece[][];
  /** Leaves or gaps larger than maxScanBytes by themselves: not scanned. */
  readonly tooBig: Piece[];
}

const GAP_HEADER = 'Content-Type: text/plain; charset=us-ascii\r\n\r\n';

export interface Cut {
  /** The parts of the message, as pieces in body order; empty when `notCut`. */
  readonly pieces: Piece[];
  /** Why the message is not cut (readers split it differently, too many parts, nested past the walk), or null. */
  readonly notCut: string | null;
  /**
   * How deep its MIME nests: 0 for a message that is not multipart, 1 for parts of a multipart,
   * ...; also inside encoded message/rfc822 parts (nesting.ts); Infinity when unknown.
   */
  readonly depth: number;
  /** How deep a piece nests at most (nesting.ts): past clamd's reach, the pieces do not help either. */
  readonly pieceDepth: number;
  /**
   * Why clamd, given the whole message, may split it otherwise than a mail reader, or null: a
   * boundary in RFC 2231 form (readers join it, clamd sees one text part), two Content-Type
   * fields (clamd takes the last, Thunderbird and this walk the first), or more parts than the
   * walk makes (the rest is not walked: it could hold either). Found in any part, also when
   * another part keeps the message from being cut (`notCut`, no pieces). The pieces carry the
   * parts as this walk found them, so the whole message and the pieces scan both readings;
   * `pieces` is then set even when `notCut` says the pieces alone do not stand for the message.
   */
  readonly clamdMisreads: string | null;
}

/** The parts of the message, as pieces in body order (a walk of its MIME structure). */
export async function piecesOf(message: Message, signal: AbortSignal): Promise<Cut> {
  const first = (name: string) => message.get(name).map((f) => Message.value(f))[0];
  const walker = new MimeWalker(first('content-type'), first('content-transfer-encoding'));
  for await (const chunk of message.openBody()) {
    signal.throwIfAborted();
    walker.push(chunk);
  }
  walker.end(message.bodySize);
  const { depth, pieceDepth, misread } = await nestingOf(walker.root, (from) => message.openBody(from), message.bodySize, signal);
  if (misread) {
    const why = `inside an encoded message/rfc822 part: ${misread}`;
    return { pieces: [], notCut: `${why} (a piece would carry it as it is)`, depth, pieceDepth, clamdMisreads: why };
  }
  if (walker.root.children.length === 0) {
    // Not multipart: the body with the message's own type and encoding fields.
    const fields = message.fields.filter((f) => f.key === 'content-type' || f.key === 'content-transfer-encoding');
    return {
      pieces: [{ start: 0, end: message.bodySize, header: `${Buffer.concat(fields.map((f) => f.raw)).toString('latin1')}\r\n`, what: 'the body' }],
      notCut: null,
      depth,
      pieceDepth,
      clamdMisreads: null,
    };
  }
  // Found over the whole tree before any return below: a part readers disagree on must not
  // hide a later one that clamd alone misreads (the whole scan's OK would then be trusted).
  const found = misreadings(walker.root);
  // Two readings of a header: the pieces are one, the whole message (as clamd reads it) the other.
  const twoReadings = message.get('content-type').length > 1 ? `the message: ${TWO_CONTENT_TYPES}` : found.twoReadings;
  const clamdMisreads = found.clamdMisreads ?? twoReadings;
  const leaves: Array<{ part: Part; path: string }> = [];
  const stack: Array<{ part: Part; path: string }> = [{ part: walker.root, path: '' }];
  while (stack.length) {
    const { part, path } = stack.pop()!;
    // Readers agree there, clamd alone does not: the pieces fix that, so the part is cut.
    if (part.ambiguous && !CLAMD_ONLY.has(part.ambiguous)) {
      const where = path ? `part ${path}` : 'the message';
      return {
        pieces: [],
        notCut: part.ambiguous.startsWith('more than') ? `${where}: ${part.ambiguous}` : `mail readers split it differently (${where}: ${part.ambiguous})`,
        depth,
        pieceDepth,
        clamdMisreads,
      };
    }
    // What lies below the walk's depth cap would stay as deep in a piece: clamd would not reach it either.
    if (part.opaque) return { pieces: [], notCut: `part ${path}: MIME nested deeper than ${MAX_MIME_DEPTH} levels`, depth, pieceDepth, clamdMisreads };
    if (part.children.length === 0 && part !== walker.root) leaves.push({ part, path });
    for (let i = part.children.length - 1; i >= 0; i--) stack.push({ part: part.children[i], path: path ? `${path}/${i + 1}` : `${i + 1}` });
  }
  const pieces: Piece[] = [];
  let at = 0;
  let before = 'the start';
  let previous: Part | null = null;
  for (const { part, path } of leaves) {
    const start = Math.max(at, part.headerStart);
    const end = Math.max(start, part.bodyEnd);
    // Between two leaves of one multipart is their delimiter line and nothing else (a sibling's
    // body ends where the line ending before the delimiter starts, RFC 2046 5.1.1): not sent.
    const delimiterOnly = previous !== null && previous.parent === part.parent;
    if (start > at && !delimiterOnly) pieces.push({ start: at, end: start, header: GAP_HEADER, what: `between ${before} and part ${path}` });
    pieces.push({ start, end, header: '', what: `part ${path}` });
    at = end;
    before = `part ${path}`;
    previous = part;
  }
  if (at < message.bodySize) pieces.push({ start: at, end: message.bodySize, header: GAP_HEADER, what: `after ${before}` });
  if (twoReadings) return { pieces, notCut: `mail readers split it differently (${twoReadings})`, depth, pieceDepth, clamdMisreads };
  return { pieces, notCut: null, depth, pieceDepth, clamdMisreads };
}

const CLAMD_ONLY: ReadonlySet<string> = new Set([RFC2231_BOUNDARY, TWO_CONTENT_TYPES]);

/**
 * Where clamd, given the whole message, reads it otherwise than readers (its OK does not cover
 * what readers see): the first part with a 2231 boundary, or a part past the walk's part cap
 * (not walked: it could hold one); and the first part with two Content-Type fields.
 */
function misreadings(root: Part): { clamdMisreads: string | null; twoReadings: string | null } {
  let clamdMisreads: string | null = null;
  let twoReadings: string | null = null;
  const stack: Array<{ part: Part; path: string }> = [{ part: root, path: '' }];
  while (stack.length) {
    const { part, path } = stack.pop()!;
    const where = path ? `part ${path}` : 'the message';
    if (part.ambiguous === RFC2231_BOUNDARY || part.ambiguous?.startsWith('more than')) clamdMisreads ??= `${where}: ${part.ambiguous}`;
    // Left as bytes (the part cap, also when its multipart keeps an earlier reason; the depth cap).
    if (part.opaque) clamdMisreads ??= `${where}: not walked into (past the walk's part or depth cap)`;
    if (part.ambiguous === TWO_CONTENT_TYPES) twoReadings ??= `${where}: ${part.ambiguous}`;
    for (let i = part.children.length - 1; i >= 0; i--) stack.push({ part: part.children[i], path: path ? `${path}/${i + 1}` : `${i + 1}` });
  }
  return { clamdMisreads: clamdMisreads ?? twoReadings, twoReadings };
}

/** Bytes a piece adds to a scan: its delimiter line, header, bytes and line end. */
function cost(p: Piece, boundary: number): number {
  return 2 + boundary + 2 + p.header.length + (p.end - p.start) + 2;
}

/** Groups the pieces, in order, into scans of at most `maxBytes` each (header and closing delimiter counted). */
export function plan(pieces: readonly Piece[], maxBytes: number, headerBytes = 0): Plan {
  const boundary = BOUNDARY_LENGTH;
  const fixed = headerBytes + headerOf('x'.repeat(boundary)).length + 2 + boundary + 4;
  const scans: Piece[][] = [];
  const tooBig: Piece[] = [];
  let current: Piece[] = [];
  let size = fixed;
  for (const p of pieces) {
    const c = cost(p, boundary);
    if (fixed + c > maxBytes) {
      tooBig.push(p);
      continue;
    }
    if (size + c > maxBytes) {
      scans.push(current);
      current = [];
      size = fixed;
    }
    current.push(p);
    size += c;
  }
  if (current.length) scans.push(current);
  return { scans, tooBig };
}

const newBoundary = () => `=_postseal_${randomBytes(14).toString('hex')}`;
const BOUNDARY_LENGTH = newBoundary().length;

/**
 * The message's own header fields but those that say what its body is: each scan carries them
 * on top, so what a sender put in the header is scanned as in the whole message.
 */
export function keptHeader(message: Message): Buffer {
  return Buffer.concat(message.fields.filter((f) => !BODY_FIELDS.has(f.key)).map((f) => f.raw));
}

const BODY_FIELDS = new Set(['content-type', 'content-transfer-encoding', 'mime-version']);

function headerOf(boundary: string): string {
  return `MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="${boundary}"\r\n\r\n`;
}

/** One scan's bytes: a multipart message of its pieces, read from the body in one pass. */
export async function* openScan(message: Message, pieces: readonly Piece[]): AsyncIterable<Buffer> {
  const boundary = newBoundary();
  yield keptHeader(message);
  yield Buffer.from(headerOf(boundary), 'latin1');
  let offset = pieces.length ? pieces[0].start : 0;
  let i = 0;
  let open = false;
  for await (const chunk of message.openBody(offset)) {
    let rest = chunk;
    while (rest.length > 0 && i < pieces.length) {
      const p = pieces[i];
      if (!open) {
        yield Buffer.from(`--${boundary}\r\n${p.header}`, 'latin1');
        open = true;
      }
      if (offset < p.start) {
        const skip = Math.min(rest.length, p.start - offset);
        rest = rest.subarray(skip);
        offset += skip;
        continue;
      }
      const take = Math.min(rest.length, p.end - offset);
      if (take > 0) yield rest.subarray(0, take);
      rest = rest.subarray(take);
      offset += take;
      if (offset >= p.end) {
        yield Buffer.from('\r\n', 'latin1');
        open = false;
        i++;
      }
    }
    if (i >= pieces.length) break;
  }
  // A piece that ends at the body's end, or an empty one, still gets its delimiter and line end.
  for (; i < pieces.length; i++) {
    if (!open) yield Buffer.from(`--${boundary}\r\n${pieces[i].header}`, 'latin1');
    yield Buffer.from('\r\n', 'latin1');
    open = false;
  }
  yield Buffer.from(`--${boundary}--\r\n`, 'latin1');
}
