/**
 * Random MIME trees for the property tests (fast-check): nested multipart/mixed, /alternative
 * and /signed, message/rfc822, leaves with 7-bit, 8-bit, NUL and over-long lines, random
 * boundaries (some equal to an outer one or to one plus "--"), CRLF and bare LF, padded
 * delimiters, multiparts left without their closing delimiter. `serialize` writes a tree and
 * says, offset for offset, what the walker must make of it with a given depth limit.
 */
import fc from 'fast-check';
import type { Part } from '../../../src/lib/mime/structure';

export interface Leaf {
  readonly kind: 'leaf';
  readonly type: string;
  readonly cte: string | null;
  readonly eightBitHeader: boolean;
  readonly lines: string[];
}
export interface Multipart {
  readonly kind: 'multipart';
  readonly subtype: string;
  readonly boundary: string;
  readonly preamble: string[];
  readonly children: Node[];
  readonly epilogue: string[];
  readonly closed: boolean;
  readonly padding: string;
}
export interface Message {
  readonly kind: 'message';
  readonly cte: string | null;
  readonly inner: Node;
}
export type Node = Leaf | Multipart | Message;

/** Content bytes: no CR, LF or "-" (so no body line can be a delimiter, in any encoding). */
const char = fc.oneof(
  {
    weight: 30,
    arbitrary: fc
      .integer({ min: 0x20, max: 0x7e })
      .filter((c) => c !== 0x2d)
      .map((c) => String.fromCharCode(c)),
  },
  { weight: 2, arbitrary: fc.integer({ min: 0x80, max: 0xff }).map((c) => String.fromCharCode(c)) },
  { weight: 1, arbitrary: fc.constantFrom('\0', '\t') },
);
const asciiChar = fc
  .integer({ min: 0x20, max: 0x7e })
  .filter((c) => c !== 0x2d)
  .map((c) => String.fromCharCode(c));
const lineOf = (c: fc.Arbitrary<string>) =>
  fc.oneof(
    { weight: 12, arbitrary: fc.array(c, { maxLength: 40 }).map((cs) => cs.join('')) },
    { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 990, max: 1010 }), c).map(([n, x]) => 'y'.repeat(n) + x) },
  );
const dirtyLine = lineOf(char);
const cleanLine = lineOf(asciiChar);

const BOUNDARY_CHARS = ['a', 'b', '1', '=', '_', '.', '-'];
/** Often one of a few related boundaries, so that inner and outer ones are equal or differ by "--". */
const boundary = fc.oneof(
  fc.constantFrom('b', 'b--', 'b----', 'a', 'a--'),
  fc.array(fc.constantFrom(...BOUNDARY_CHARS), { minLength: 1, maxLength: 5 }).map((cs) => cs.join('')),
);

export const mimeTree: fc.Arbitrary<Node> = fc.letrec<{ node: Node; leaf: Leaf; multipart: Multipart; message: Message }>((tie) => ({
  node: fc.oneof({ depthSize: 'large', maxDepth: 8 }, tie('leaf'), tie('multipart'), tie('message')),
  leaf: fc.record({
    kind: fc.constant('leaf' as const),
    type: fc.constantFrom('text/plain; charset=utf-8', 'application/octet-stream', 'text/html'),
    cte: fc.constantFrom(null, '7bit', '8bit', 'binary', 'base64', 'quoted-printable'),
    eightBitHeader: fc.oneof({ weight: 8, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
    lines: fc.boolean().chain((dirty) => fc.array(dirty ? dirtyLine : cleanLine, { minLength: 1, maxLength: 4 })),
  }),
  multipart: fc.record({
    kind: fc.constant('multipart' as const),
    subtype: fc.constantFrom('mixed', 'alternative', 'signed'),
    boundary,
    preamble: fc
      .array(cleanLine, { maxLength: 2 })
      .chain((clean) => fc.oneof({ weight: 5, arbitrary: fc.constant(clean) }, { weight: 1, arbitrary: fc.array(dirtyLine, { maxLength: 2 }) })),
    children: fc.array(tie('node'), { minLength: 1, maxLength: 3 }),
    epilogue: fc.array(cleanLine, { maxLength: 2 }),
    closed: fc.oneof({ weight: 5, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
    padding: fc.constantFrom('', '', '', ' ', '\t '),
  }),
  message: fc.record({
    kind: fc.constant('message' as const),
    cte: fc.constantFrom(null, '7bit', '8bit'),
    inner: tie('node'),
  }),
})).node;

/** What the walker must make of a part: Part's fields and the depth of its tree. */
export interface Expected {
  contentType: string;
  boundary: string | null;
  transferEncoding: string;
  transferEncodingField: [number, number] | null;
  headerEnd: number;
  eightBitHeader: boolean;
  bodyStart: number;
  bodyEnd: number;
  eightBit: boolean;
  nul: boolean;
  longLine: boolean;
  depth: number;
  opaque: boolean;
  children: Expected[];
}

export interface Serialized {
  readonly contentType: string;
  readonly transferEncoding: string | undefined;
  readonly body: Buffer;
  readonly expected: Expected;
}

/** Writes `root` as a message body; `eols` picks each line ending in turn. */
export function serialize(root: Node, maxDepth: number, eols: readonly ('\r\n' | '\n')[]): Serialized {
  const out: string[] = [];
  let pos = 0;
  let eolAt = 0;
  let unique = 0;
  const write = (s: string) => {
    out.push(s);
    pos += s.length;
  };
  const eol = () => write(eols[eolAt++ % eols.length]);
  const flagsOf = (lines: string[]) => ({
    eightBit: lines.some((l) => /[\x80-\xff]/.test(l)),
    nul: lines.some((l) => l.includes('\0')),
    longLine: lines.some((l) => l.length > 998),
  });
  /**
   * Boundaries the walker has open (`registered`); `free` when this boundary may be one of
   * them or related ("b" and "b--"): only a walked multipart that closes itself may, as the
   * innermost wins; an opaque one, or one inside it, may not, as its lines are not its own.
   */
  const related = (b: string, others: string[]) => others.some((o) => o === b || o === `${b}--` || b === `${o}--`);
  const pick = (b: string, registered: string[], free: boolean) => (free || !related(b, registered) ? b : `${b}u${unique++}`);

  const typeOf = (node: Node) => (node.kind === 'leaf' ? node.type.split(';')[0] : node.kind === 'message' ? 'message/rfc822' : `multipart/${node.subtype}`);
  const cteOf = (node: Node) => (node.kind === 'multipart' ? null : node.cte);
  const contentTypeOf = (node: Node) =>
    node.kind === 'multipart' ? `multipart/${node.subtype}; boundary="${node.boundary}"` : node.kind === 'message' ? 'message/rfc822' : node.type;

  /** The body of `node` (its header already written, its boundary settled), walked or opaque. */
  const body = (node: Node, part: Expected, registered: string[], inOpaque: boolean): void => {
    part.bodyStart = pos;
    const opaque = !inOpaque && node.kind !== 'leaf' && part.depth >= maxDepth;
    part.opaque = opaque;
    const hidden = inOpaque || opaque;
    if (node.kind === 'leaf') {
      node.lines.forEach((l, i) => {
        if (i) eol();
        write(l);
      });
      Object.assign(part, flagsOf(hidden ? [] : node.lines));
    } else if (node.kind === 'message') {
      const child = entity(node.inner, part.depth + 1, registered, hidden);
      if (!hidden) part.children.push(child);
    } else {
      const b = node.boundary;
      part.boundary = hidden || !node.closed ? b : null;
      const inner = hidden ? registered : [...registered, b];
      for (const l of node.preamble) {
        write(l);
        eol();
      }
      node.children.forEach((c, i) => {
        // The line ending before a delimiter is the delimiter's (RFC 2046 5.1.1).
        if (i) eol();
        write(`--${b}${node.padding}`);
        eol();
        const child = entity(c, part.depth + 1, inner, hidden);
        if (!hidden) part.children.push(child);
      });
      // Without its closing delimiter, the last part runs to the outer delimiter: no epilogue.
      if (node.closed) {
        eol();
        write(`--${b}--${node.padding}`);
        for (const l of node.epilogue) {
          eol();
          write(l);
        }
      }
      Object.assign(part, flagsOf(hidden ? [] : [...node.preamble, ...(node.closed ? node.epilogue : [])]));
    }
    part.bodyEnd = pos;
  };

  /** A part: its header fields, the blank line, its body. */
  const entity = (node: Node, depth: number, registered: string[], inOpaque: boolean): Expected => {
    const part = newExpected(typeOf(node), cteOf(node) ?? '7bit', depth);
    const settled = node.kind === 'multipart' ? { ...node, boundary: pick(node.boundary, registered, !inOpaque && depth < maxDepth && node.closed) } : node;
    write(`Content-Type: ${contentTypeOf(settled)}`);
    eol();
    const cte = cteOf(node);
    if (cte) {
      const start = pos;
      write(`Content-Transfer-Encoding: ${cte}`);
      eol();
      part.transferEncodingField = [start, pos];
    }
    if (node.kind === 'leaf' && node.eightBitHeader) {
      write('X-Note: caf\xe9');
      eol();
      part.eightBitHeader = !inOpaque;
    }
    part.headerEnd = pos;
    eol();
    body(settled, part, registered, inOpaque);
    return part;
  };

  const top = newExpected(typeOf(root), cteOf(root) ?? '7bit', 0);
  body(root, top, [], false);
  const bodyText = out.join('');
  settleOpaque(top, bodyText);
  return { contentType: contentTypeOf(root), transferEncoding: cteOf(root) ?? undefined, body: Buffer.from(bodyText, 'latin1'), expected: top };
}

/** An opaque part's flags describe all of its body, whatever it holds. */
function settleOpaque(root: Expected, text: string): void {
  for (const stack = [root]; stack.length; ) {
    const part = stack.pop()!;
    if (part.opaque) {
      const lines = text
        .slice(part.bodyStart, part.bodyEnd)
        .split('\n')
        .map((l) => l.replace(/\r$/, ''));
      part.eightBit = /[\x80-\xff]/.test(text.slice(part.bodyStart, part.bodyEnd));
      part.nul = text.slice(part.bodyStart, part.bodyEnd).includes('\0');
      part.longLine = lines.some((l) => l.length > 998);
    }
    stack.push(...part.children);
  }
}

function newExpected(contentType: string, transferEncoding: string, depth: number): Expected {
  return {
    contentType,
    boundary: null,
    transferEncoding,
    transferEncodingField: null,
    headerEnd: -1,
    eightBitHeader: false,
    bodyStart: -1,
    bodyEnd: -1,
    eightBit: false,
    nul: false,
    longLine: false,
    depth,
    opaque: false,
    children: [],
  };
}

/** A walked part in the shape of Expected, without recursion (trees may be deep). */
export function describe(root: Part): Expected {
  const map = (p: Part): Expected => {
    const te = p.transferEncodingField;
    return {
      contentType: p.contentType,
      boundary: p.boundary,
      transferEncoding: p.transferEncoding,
      transferEncodingField: te && [te.start, te.end],
      headerEnd: p.headerEnd,
      eightBitHeader: p.eightBitHeader,
      bodyStart: p.bodyStart,
      bodyEnd: p.bodyEnd,
      eightBit: p.eightBit,
      nul: p.nul,
      longLine: p.longLine,
      depth: p.depth,
      opaque: p.opaque,
      children: [],
    };
  };
  const top = map(root);
  for (const stack: [Part, Expected][] = [[root, top]]; stack.length; ) {
    const [p, e] = stack.pop()!;
    for (const c of p.children) {
      const ce = map(c);
      e.children.push(ce);
      stack.push([c, ce]);
    }
  }
  return top;
}

/** Every part with its path as the seven-bit stage names it ("body", "body.2.1"), in document order. */
export function partsWithPaths(root: Part): [string, Part][] {
  const out: [string, Part][] = [];
  for (const stack: [string, Part][] = [['body', root]]; stack.length; ) {
    const [path, p] = stack.pop()!;
    out.push([path, p]);
    for (let i = p.children.length - 1; i >= 0; i--) stack.push([`${path}.${i + 1}`, p.children[i]]);
  }
  return out;
}
