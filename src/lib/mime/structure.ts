/**
 * Walks the MIME structure of a message body as it streams by (RFC 2045, RFC 2046) and
 * records, for every entity, where its header fields and body are in the stream and what
 * its content holds: 8-bit bytes, NUL, lines over 998 octets. Nothing is copied or decoded,
 * so a caller can rewrite chosen byte ranges and keep every other byte as it was.
 *
 * The top-level header is the Message's (already parsed); offsets are from the body start.
 * message/rfc822 parts are walked into; a part whose header never ends, or a boundary of an
 * outer multipart seen inside an inner one, ends the open parts where the boundary starts.
 *
 * Work is linear in the body, however deep the nesting: a line starting with "--" is looked
 * up in a map of the open boundaries (boundaries.ts: at most two lookups), not compared with
 * every open ancestor, and nesting stops at `maxDepth` (MAX_MIME_DEPTH unless the caller says): a
 * multipart or message/rfc822 at that depth is `opaque`, its body (inner boundaries and
 * entities included) plain bytes of it. Deep nesting from outside (3,000 message/rfc822 in
 * 100 KB) would otherwise make a part tree that recursive callers cannot walk.
 */
import libmime from 'libmime';
import { OpenBoundaries } from './boundaries';
import { type CrDashes, LineReader, MAX_LINE_OCTETS, type Line, type PlainRun } from './lines';
import { parseParams } from './params';

export interface FieldRange {
  readonly start: number;
  end: number;
}

export interface Part {
  readonly parent: Part | null;
  /** Lower-case type/subtype; text/plain (message/rfc822 in multipart/digest) when absent. */
  contentType: string;
  boundary: string | null;
  /** Lower-case Content-Transfer-Encoding; 7bit when absent. */
  transferEncoding: string;
  /** The Content-Transfer-Encoding field, to rewrite in place (parts only). */
  transferEncodingField: FieldRange | null;
  /** Where its header starts (the line after its delimiter; parts only, -1 for the top level). */
  readonly headerStart: number;
  /** Where a new field goes: after the last header field (parts only; -1 for the top level). */
  headerEnd: number;
  eightBitHeader: boolean;
  bodyStart: number;
  bodyEnd: number;
  /** Body content of a leaf, or preamble and epilogue of a multipart. */
  eightBit: boolean;
  nul: boolean;
  longLine: boolean;
  /** 0 for the message; one more inside each multipart or message/rfc822. */
  readonly depth: number;
  /**
   * A multipart or message/rfc822 at the depth limit, not walked into: no children, its body
   * is bytes the flags above describe (nesting deeper than `depth`).
   */
  opaque: boolean;
  /**
   * Why mail readers may disagree on this part's structure, or null: two Content-Type fields,
   * two different boundary parameters, a multipart without a boundary, a line in the header
   * that is no field. The walk goes on as before; a checker should fail closed on it.
   */
  ambiguous: string | null;
  readonly children: Part[];
}

/**
 * How deep parts are walked by default. Real mail nests a few levels (a forward of a forward
 * of an alternative); 100 is far beyond that and keeps the part tree small whatever comes in.
 */
export const MAX_MIME_DEPTH = 100;
/**
 * Parts a walk makes at most. Each is an object kept for the walk's caller: 2,000,000 empty
 * parts (a 20 MB message) took 800 MB of heap. Past the cap a delimiter starts no part: it
 * stays in the body of the part before it, which is made `opaque` (left as it is), and its
 * multipart `ambiguous` (a checker fails closed). Real mail has dozens; amavisd's $MAXFILES
 * is 3,000; the tests walk 10,000.
 */
export const MAX_MIME_PARTS = 20_000;

/**
 * Why a multipart whose boundary is in RFC 2231 form is `ambiguous`: it is walked as libmime
 * and Thunderbird read it (the sections joined), but clamd reads no boundary there.
 */
export const RFC2231_BOUNDARY = 'a boundary in RFC 2231 form (boundary*), which clamd does not read';
/** Why a part is `ambiguous` when it has two Content-Type fields (Thunderbird reads the first, clamd the last). */
export const TWO_CONTENT_TYPES = 'two Content-Type fields';

/**
 * The two reasons above are a checker's to handle (readers agree, clamd alone reads otherwise:
 * the virus stage scans the parts again); every other reason means readers disagree (fail closed).
 */
const CLAMD_ONLY: ReadonlySet<string> = new Set([RFC2231_BOUNDARY, TWO_CONTENT_TYPES]);

/**
 * Marks `part` ambiguous for `why`. The first reason stays, except that a reason readers disagree
 * on replaces one clamd alone misreads: a part with a 2231 boundary and a header line that is
 * no field must not be cut as if only clamd misread it.
 */
export function flag(part: Part, why: string): void {
  if (part.ambiguous === null || (CLAMD_ONLY.has(part.ambiguous) && !CLAMD_ONLY.has(why))) part.ambiguous = why;
}

export interface WalkerOptions {
  /** Parts at this depth are not walked into (opaque); at least 1. */
  readonly maxDepth?: number;
  /**
   * Told each part's header fields (names lower case, values unfolded raw Latin-1) when its
   * header ends; `truncated` when a line of the field was longer than `lineHeadBytes`.
   */
  readonly onHeader?: (part: Part, fields: readonly HeaderFieldText[]) => void;
  /** Bytes kept of each line that may be a header field or a boundary (1000 unless the caller says). */
  readonly lineHeadBytes?: number;
  /** Parts made at most (MAX_MIME_PARTS unless the caller says). */
  readonly maxParts?: number;
}

export interface HeaderFieldText {
  readonly name: string;
  readonly value: string;
  readonly truncated: boolean;
}

type State = 'header' | 'body';

export class MimeWalker {
  readonly root: Part;
  private current: Part;
  private state: State = 'body';
  private fields: { name: string; range: FieldRange; value: string; truncated: boolean }[] = [];
  private previousEol = 0;
  private readonly maxDepth: number;
  private readonly maxParts: number;
  private parts = 0;
  private readonly onHeader: WalkerOptions['onHeader'];
  /** The boundaries of the open multiparts. */
  private readonly open = new OpenBoundaries<Part>();
  private readonly lines: LineReader;

  /** `contentType` and `transferEncoding` are the raw values of the top-level fields, if any. */
  constructor(contentType: string | undefined, transferEncoding: string | undefined, options: WalkerOptions = {}) {
    this.maxDepth = Math.max(1, options.maxDepth ?? MAX_MIME_DEPTH);
    this.maxParts = options.maxParts ?? MAX_MIME_PARTS;
    this.onHeader = options.onHeader;
    this.lines = new LineReader(
      {
        line: (line) => this.line(line),
        // Only a delimiter can end a body, and only a line starting with "--" can be one.
        takesPlainRuns: () => this.state === 'body',
        plain: (run) => this.plainRun(run),
      },
      options.lineHeadBytes,
    );
    this.root = newPart(null, -1, 0);
    this.applyHeader(this.root, contentType, transferEncoding);
    this.current = this.root;
    this.enterBody(this.root);
  }

  push(chunk: Buffer): void {
    this.lines.push(chunk);
  }

  /** Exact boundary comparisons made so far (tests check they stay linear in the lines). */
  get boundaryComparisons(): number {
    return this.open.comparisons;
  }

  end(totalLength: number): void {
    this.lines.end();
    for (let p: Part | null = this.current; p; p = p.parent) this.close(p, totalLength);
  }

  private line(line: Line): void {
    if (line.crDashes.length) this.bareCrDelimiters(line.crDashes);
    const delimiter = this.delimiter(line);
    if (delimiter) this.boundary(line, delimiter.part, delimiter.closing);
    else if (this.state === 'header') this.headerLine(line);
    else this.bodyLine(this.current, line);
    this.previousEol = line.eolLength;
  }

  /** The innermost open multipart whose delimiter this line is (boundaries.ts), or null. */
  private delimiter(line: Line): { part: Part; closing: boolean } | null {
    if (line.head[0] !== 0x2d || line.head[1] !== 0x2d || this.open.size === 0) return null;
    const found = this.open.match(line.head.toString('latin1', 2));
    if ('part' in found) return found;
    if (found.lenient) flag(this.current, 'a line that some readers take for a boundary (in another case, or with CR, FF or VT after it)');
    return null;
  }

  /**
   * Thunderbird ends a line at a bare CR: a bare CR + "--" + an open boundary inside a line is a
   * delimiter to it and none to RFC 2046 (nor to this walker), so the part is `ambiguous`.
   */
  private bareCrDelimiters(found: CrDashes): void {
    if (!this.open.bareCrHit(found)) return;
    flag(this.current, 'a bare CR before a boundary (Thunderbird ends a line there)');
  }

  private boundary(line: Line, multipart: Part, closing: boolean): void {
    if (!closing && this.parts >= this.maxParts) {
      this.current.opaque = true;
      flag(multipart, `more than ${this.maxParts} MIME parts: the rest is not walked`);
      return;
    }
    // The line ending before a boundary belongs to the delimiter (RFC 2046 5.1.1).
    const end = line.start - this.previousEol;
    for (let p = this.current; p !== multipart; p = p.parent!) this.close(p, end);
    if (closing) {
      this.forget(multipart);
      multipart.boundary = null;
      this.current = multipart;
      this.state = 'body';
      return;
    }
    const child = newPart(multipart, line.start + line.length + line.eolLength, -1);
    this.parts++;
    multipart.children.push(child);
    this.current = child;
    this.state = 'header';
    this.fields = [];
  }

  private headerLine(line: Line): void {
    const part = this.current;
    part.eightBitHeader ||= line.eightBit;
    const text = line.head.toString('latin1');
    const last = this.fields[this.fields.length - 1];
    if (line.length > 0 && (text[0] === ' ' || text[0] === '\t') && last) {
      last.range.end = line.start + line.length + line.eolLength;
      last.value += text;
      last.truncated ||= line.head.length < line.length;
      return;
    }
    const colon = text.indexOf(':');
    const isField = colon > 0 && /^[\x21-\x39\x3b-\x7e]+[ \t]*$/.test(text.slice(0, colon));
    if (isField) {
      this.fields.push({
        name: text.slice(0, colon).trim().toLowerCase(),
        range: { start: line.start, end: line.start + line.length + line.eolLength },
        value: text.slice(colon + 1),
        truncated: line.head.length < line.length,
      });
      return;
    }
    // A blank line ends the header; a line that is not a field starts the body without one.
    part.headerEnd = line.start;
    if (line.length > 0) flag(part, 'a line in the part header that is no header field');
    const cts = this.fields.filter((f) => f.name === 'content-type');
    if (cts.length > 1) flag(part, TWO_CONTENT_TYPES);
    const ct = cts[0];
    const ctes = this.fields.filter((f) => f.name === 'content-transfer-encoding');
    const cte = ctes[0];
    this.applyHeader(part, ct?.value, cte?.value);
    if (twoEncodings(ctes.map((f) => f.value))) flag(part, 'two different Content-Transfer-Encoding fields');
    this.reportHeader(part);
    part.transferEncodingField = cte?.range ?? null;
    part.bodyStart = line.length === 0 ? line.start + line.eolLength : line.start;
    this.enterBody(part);
    if (line.length > 0) this.line(line);
  }

  private reportHeader(part: Part): void {
    this.onHeader?.(
      part,
      this.fields.map((f) => ({ name: f.name, value: f.value, truncated: f.truncated })),
    );
  }

  private bodyLine(part: Part, line: Line): void {
    part.eightBit ||= line.eightBit;
    part.nul ||= line.nul;
    part.longLine ||= line.length > MAX_LINE_OCTETS;
  }

  private plainRun(run: PlainRun): void {
    if (run.crDashes.length) this.bareCrDelimiters(run.crDashes);
    const part = this.current;
    part.eightBit ||= run.eightBit;
    part.nul ||= run.nul;
    part.longLine ||= run.longLine;
    if (run.eolLength) this.previousEol = run.eolLength;
  }

  private applyHeader(part: Part, contentType: string | undefined, transferEncoding: string | undefined): void {
    const digest = part.parent?.contentType === 'multipart/digest';
    const parsed = contentType ? libmime.parseHeaderValue(contentType.replace(/\r?\n/g, '')) : null;
    part.contentType = parsed?.value.toLowerCase().trim() || (digest ? 'message/rfc822' : 'text/plain');
    const boundary = parsed?.params.boundary;
    part.boundary = part.contentType.startsWith('multipart/') && typeof boundary === 'string' && boundary ? boundary : null;
    if (part.contentType.startsWith('multipart/')) {
      const all = new Set(contentType ? parseParams(contentType.replace(/\r?\n/g, '')).params.get('boundary') : []);
      if (!part.boundary) flag(part, 'multipart without a boundary');
      else if (all.size > 1) flag(part, 'two boundary parameters');
      // libmime (and Thunderbird) join boundary*0, boundary*1 or read boundary*=; clamd reads
      // no boundary there, so it would scan the whole body as one text part.
      else if (/(^|;)\s*boundary\*/i.test(contentType!.replace(/\r?\n/g, ''))) flag(part, RFC2231_BOUNDARY);
    }
    part.transferEncoding = normalEncoding(transferEncoding);
  }

  /**
   * A multipart's boundary opens; a message/rfc822 body is itself an entity, unless it was
   * encoded (which RFC 2046 5.2.1 forbids). At the depth limit neither happens: the part is opaque.
   */
  private enterBody(part: Part): void {
    this.state = 'body';
    const message = part.contentType === 'message/rfc822' && ['7bit', '8bit', 'binary'].includes(part.transferEncoding);
    if (!part.boundary && !message) return;
    if (part.depth >= this.maxDepth) {
      part.opaque = true;
      return;
    }
    if (part.boundary) return this.open.add(part);
    const child = newPart(part, part.bodyStart, -1);
    this.parts++;
    part.children.push(child);
    this.current = child;
    this.state = 'header';
    this.fields = [];
  }

  /** The part's boundary is no longer open (an opaque part's never was). */
  private forget(part: Part): void {
    if (!part.opaque) this.open.remove(part);
  }

  private close(part: Part, end: number): void {
    if (part.bodyEnd >= 0) return;
    if (part.headerEnd < 0 && part.parent) {
      // The header never ended: what there was is header, the body is empty.
      if (part === this.current && this.state === 'header') this.reportHeader(part);
      part.headerEnd = end;
      part.bodyStart = end;
    }
    part.bodyStart = Math.min(part.bodyStart, end);
    part.bodyEnd = end;
    this.forget(part);
    if (this.current === part) this.current = part.parent ?? part;
  }
}

function newPart(parent: Part | null, headerStart: number, bodyStart: number): Part {
  return {
    parent,
    depth: parent ? parent.depth + 1 : 0,
    opaque: false,
    ambiguous: null,
    contentType: 'text/plain',
    boundary: null,
    transferEncoding: '7bit',
    transferEncodingField: null,
    headerStart,
    headerEnd: -1,
    eightBitHeader: false,
    bodyStart: bodyStart >= 0 ? bodyStart : headerStart,
    bodyEnd: -1,
    eightBit: false,
    nul: false,
    longLine: false,
    children: [],
  };
}

/** A Content-Transfer-Encoding value as compared: comments out, trimmed, lower case; 7bit when absent. */
function normalEncoding(value: string | undefined): string {
  return (
    (value ?? '7bit')
      .replace(/\(.*?\)/g, '')
      .trim()
      .toLowerCase() || '7bit'
  );
}

/** The encodings that leave the bytes as they are (RFC 2045 6.2): "7bit" beside "8bit" decodes the same. */
const IDENTITY = new Set(['7bit', '8bit', 'binary']);

/**
 * Whether a part's Content-Transfer-Encoding fields disagree on how to decode it: the walk
 * decodes by the first, clamd decodes by each, and a reader may take the last ("7bit" then
 * "base64" hides a program from a checker that reads the first).
 */
export function twoEncodings(values: readonly string[]): boolean {
  return new Set(values.map((v) => (IDENTITY.has(normalEncoding(v)) ? '7bit' : normalEncoding(v)))).size > 1;
}
