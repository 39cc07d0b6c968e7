/**
 * Walks the MIME structure of a message body as it streams by (RFC 2045, RFC 2046) and
 * records, for every entity, where its header fields and body are in the stream and what
 * its content holds: 8-bit bytes, NUL, lines over 998 octets. Nothing is copied or decoded,
 * so a caller can rewrite chosen byte ranges and keep every other byte as it was.
 *
 * The top-level header is the Message's (already parsed); offsets are from the body start.
 * message/rfc822 parts are walked into; a part whose header never ends, or a boundary of an
 * outer multipart seen inside an inner one, ends the open parts where the boundary starts.
 */
import libmime from 'libmime';
import { LineReader, MAX_LINE_OCTETS, type Line, type PlainRun } from './lines';

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
  /** Where a new field goes: after the last header field (parts only; -1 for the top level). */
  headerEnd: number;
  eightBitHeader: boolean;
  bodyStart: number;
  bodyEnd: number;
  /** Body content of a leaf, or preamble and epilogue of a multipart. */
  eightBit: boolean;
  nul: boolean;
  longLine: boolean;
  readonly children: Part[];
}

type State = 'header' | 'body';

export class MimeWalker {
  readonly root: Part;
  private current: Part;
  private state: State = 'body';
  private fields: { name: string; range: FieldRange; value: string }[] = [];
  private previousEol = 0;
  private readonly lines = new LineReader({
    line: (line) => this.line(line),
    // Only a delimiter can end a body, and only a line starting with "--" can be one.
    takesPlainRuns: () => this.state === 'body',
    plain: (run) => this.plainRun(run),
  });

  /** `contentType` and `transferEncoding` are the raw values of the top-level fields, if any. */
  constructor(contentType: string | undefined, transferEncoding: string | undefined) {
    this.root = newPart(null, -1, 0);
    this.applyHeader(this.root, contentType, transferEncoding);
    this.current = this.root;
    this.enterBody(this.root);
  }

  push(chunk: Buffer): void {
    this.lines.push(chunk);
  }

  end(totalLength: number): void {
    this.lines.end();
    for (let p: Part | null = this.current; p; p = p.parent) this.close(p, totalLength);
  }

  private line(line: Line): void {
    const delimiter = this.delimiter(line);
    if (delimiter) this.boundary(line, delimiter.part, delimiter.closing);
    else if (this.state === 'header') this.headerLine(line);
    else this.bodyLine(this.current, line);
    this.previousEol = line.eolLength;
  }

  /** The innermost open multipart whose boundary this line is ("--b" or "--b--", then transport padding). */
  private delimiter(line: Line): { part: Part; closing: boolean } | null {
    if (line.head[0] !== 0x2d || line.head[1] !== 0x2d) return null;
    const text = line.head.toString('latin1');
    for (let p: Part | null = this.current; p; p = p.parent) {
      if (!p.boundary || !text.startsWith(`--${p.boundary}`)) continue;
      const rest = text.slice(p.boundary.length + 2);
      if (/^(--)?[ \t]*$/.test(rest)) return { part: p, closing: rest.startsWith('--') };
    }
    return null;
  }

  private boundary(line: Line, multipart: Part, closing: boolean): void {
    // The line ending before a boundary belongs to the delimiter (RFC 2046 5.1.1).
    const end = line.start - this.previousEol;
    for (let p = this.current; p !== multipart; p = p.parent!) this.close(p, end);
    if (closing) {
      multipart.boundary = null;
      this.current = multipart;
      this.state = 'body';
      return;
    }
    const child = newPart(multipart, line.start + line.length + line.eolLength, -1);
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
      return;
    }
    const colon = text.indexOf(':');
    const isField = colon > 0 && /^[\x21-\x39\x3b-\x7e]+[ \t]*$/.test(text.slice(0, colon));
    if (isField) {
      this.fields.push({ name: text.slice(0, colon).trim().toLowerCase(), range: { start: line.start, end: line.start + line.length + line.eolLength }, value: text.slice(colon + 1) });
      return;
    }
    // A blank line ends the header; a line that is not a field starts the body without one.
    part.headerEnd = line.start;
    const ct = this.fields.find((f) => f.name === 'content-type');
    const cte = this.fields.find((f) => f.name === 'content-transfer-encoding');
    this.applyHeader(part, ct?.value, cte?.value);
    part.transferEncodingField = cte?.range ?? null;
    part.bodyStart = line.length === 0 ? line.start + line.eolLength : line.start;
    this.enterBody(part);
    if (line.length > 0) this.line(line);
  }

  private bodyLine(part: Part, line: Line): void {
    part.eightBit ||= line.eightBit;
    part.nul ||= line.nul;
    part.longLine ||= line.length > MAX_LINE_OCTETS;
  }

  private plainRun(run: PlainRun): void {
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
    part.transferEncoding = (transferEncoding ?? '7bit').replace(/\(.*?\)/g, '').trim().toLowerCase() || '7bit';
  }

  /** A message/rfc822 body is itself an entity, unless it was encoded (which RFC 2046 5.2.1 forbids). */
  private enterBody(part: Part): void {
    this.state = 'body';
    if (part.contentType === 'message/rfc822' && ['7bit', '8bit', 'binary'].includes(part.transferEncoding)) {
      const child = newPart(part, part.bodyStart, -1);
      part.children.push(child);
      this.current = child;
      this.state = 'header';
      this.fields = [];
    }
  }

  private close(part: Part, end: number): void {
    if (part.bodyEnd >= 0) return;
    if (part.headerEnd < 0 && part.parent) {
      // The header never ended: what there was is header, the body is empty.
      part.headerEnd = end;
      part.bodyStart = end;
    }
    part.bodyStart = Math.min(part.bodyStart, end);
    part.bodyEnd = end;
    if (this.current === part) this.current = part.parent ?? part;
  }
}

function newPart(parent: Part | null, headerStart: number, bodyStart: number): Part {
  return {
    parent,
    contentType: 'text/plain',
    boundary: null,
    transferEncoding: '7bit',
    transferEncodingField: null,
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
