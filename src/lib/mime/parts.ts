/**
 * The content tree of a message (lib/archive/expand.ts ContentNode) from its MIME structure
 * (RFC 2045, RFC 2046): one node per entity, named by its path ("2/1/3"; a message that is
 * not multipart is part "1"), with its declared type, its file names, the type its decoded
 * bytes show and, for an archive, its members.
 *
 * File names come from the Content-Disposition `filename` (RFC 2183; RFC 2231 continuations
 * and charsets) and the Content-Type `name` parameter, RFC 2047 encoded-words decoded in both
 * (Outlook writes them there), and raw 8-bit header bytes read as UTF-8 when they are.
 *
 * Two reads of the body: structure.ts walks it (linear, depth-capped), then each leaf's bytes
 * go through its Content-Transfer-Encoding decoder; only the first HEAD_BYTES are kept, unless
 * they show an archive, which is kept whole up to `maxMemberBytes` and walked into. A part
 * beyond the MIME depth cap is marked `limit: mime-depth`. Only the signal rejects.
 */
import libmime from 'libmime';
import { Budget, expand, newNode, type ArchiveLimits, type ContentNode } from '../archive/expand';
import { archiveKind, detectType, HEAD_BYTES } from '../archive/magic';
import { Message } from '../../transaction/message';
import { decoderFor, type Decoder } from './decoders';
import { type HeaderFieldText, MimeWalker, type Part } from './structure';

export interface MessageContent {
  /** The message's own entity; MIME parts and archive members are its descendants. */
  readonly root: ContentNode;
  /** What unpacking spent (members, inflated bytes): the work done, for tests and logs. */
  readonly budget: Budget;
  /** MIME parts walked (leaves and containers). */
  readonly mimeParts: number;
}

/** A name is at most this long when kept; the end is kept, as it holds the extension. */
const MAX_NAME = 1024;

type Fields = readonly HeaderFieldText[];

/**
 * Bytes kept of a header line: a file name is read whole up to this (Postfix rebuilds header
 * lines up to header_size_limit, 100 KiB); a longer one is marked, not silently cut.
 */
const HEADER_LINE_BYTES = 128 * 1024;

export async function messageContent(message: Message, limits: ArchiveLimits, signal: AbortSignal): Promise<MessageContent> {
  const headers = new Map<Part, Fields>();
  const topType = message.get('content-type')[0];
  const topCte = message.get('content-transfer-encoding')[0];
  const walker = new MimeWalker(topType && Message.value(topType), topCte && Message.value(topCte), {
    lineHeadBytes: HEADER_LINE_BYTES,
    onHeader: (part, fields) =>
      headers.set(
        part,
        fields.filter((f) => f.name === 'content-type' || f.name === 'content-disposition'),
      ),
  });
  headers.set(
    walker.root,
    message.fields.filter((f) => f.key === 'content-type' || f.key === 'content-disposition').map((f) => ({ name: f.key, value: Message.value(f), truncated: false })),
  );
  let size = 0;
  for await (const chunk of message.openBody()) {
    signal.throwIfAborted();
    walker.push(chunk);
    size += chunk.length;
  }
  walker.end(size);

  // Nodes in document order (an explicit stack: 10,000 siblings or 100 levels cost no recursion).
  const budget = new Budget(limits);
  const leaves: { part: Part; node: ContentNode }[] = [];
  const root = nodeOf(walker.root, walker.root.children.length ? '' : '1', headers);
  const stack: { part: Part; node: ContentNode }[] = [{ part: walker.root, node: root }];
  let mimeParts = 0;
  while (stack.length) {
    const { part, node } = stack.pop()!;
    mimeParts++;
    if (part.opaque) node.limit = 'mime-depth';
    if (part.children.length === 0) leaves.push({ part, node });
    const kids = part.children.map((c, i) => ({ part: c, node: nodeOf(c, node.path ? `${node.path}/${i + 1}` : `${i + 1}`, headers) }));
    for (const k of kids) node.children.push(k.node);
    for (let i = kids.length - 1; i >= 0; i--) stack.push(kids[i]);
  }
  await readLeaves(message, leaves, budget, signal);
  return { root, budget, mimeParts };
}

function nodeOf(part: Part, path: string, headers: Map<Part, Fields>): ContentNode {
  const fields = headers.get(part) ?? [];
  const names: string[] = [];
  const declared: string[] = [part.contentType];
  const node = newNode(path, names, declared);
  for (const f of fields) {
    // A name cut short may have lost its extension: not matched as if whole, but unreadable.
    if (f.truncated) node.problem = `${f.name} field longer than ${HEADER_LINE_BYTES} bytes on one line`;
    let parsed: ReturnType<typeof libmime.parseHeaderValue>;
    try {
      parsed = libmime.parseHeaderValue(asUnicode(f.value));
    } catch {
      // Whatever the sender wrote, the answer is a result: a part whose name cannot be read.
      node.problem = `${f.name} field cannot be parsed`;
      continue;
    }
    if (f.name === 'content-type') {
      const t = parsed.value.trim().toLowerCase();
      if (t && !declared.includes(t)) declared.push(t);
      addName(names, parsed.params.name);
    } else addName(names, parsed.params.filename);
  }
  return node;
}

function addName(names: string[], raw: unknown): void {
  if (typeof raw !== 'string' || raw === '') return;
  let name = raw;
  try {
    name = libmime.decodeWords(raw);
  } catch {
    // An encoded-word that does not decode is matched as written.
  }
  if (name.length > MAX_NAME) name = name.slice(-MAX_NAME);
  if (!names.includes(name)) names.push(name);
}

/** Header bytes (read as Latin-1) as UTF-8 when they are valid UTF-8 (RFC 6532 mail). */
function asUnicode(value: string): string {
  if (!/[^\x00-\x7f]/.test(value)) return value;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(value, 'latin1'));
  } catch {
    return value;
  }
}

/**
 * The second read: each leaf's body range, decoded, into a collector. Leaves are in document
 * order and their ranges do not overlap, so one pass over the body serves them all.
 */
async function readLeaves(message: Message, leaves: { part: Part; node: ContentNode }[], budget: Budget, signal: AbortSignal): Promise<void> {
  let i = 0;
  let offset = 0;
  let current: Collector | null = null;
  const finish = async () => {
    if (!current) return;
    await current.finish(budget, signal);
    current = null;
  };
  for await (const chunk of message.openBody()) {
    signal.throwIfAborted();
    const chunkEnd = offset + chunk.length;
    while (i < leaves.length) {
      const { part, node } = leaves[i];
      if (part.bodyStart >= chunkEnd) break;
      current ??= new Collector(node, part.transferEncoding, budget.limits.maxMemberBytes);
      const from = Math.max(part.bodyStart, offset) - offset;
      const to = Math.min(part.bodyEnd, chunkEnd) - offset;
      if (to > from) current.push(chunk.subarray(from, to));
      if (part.bodyEnd > chunkEnd) break;
      await finish();
      i++;
    }
    offset = chunkEnd;
  }
  for (; i < leaves.length; i++) {
    current ??= new Collector(leaves[i].node, leaves[i].part.transferEncoding, budget.limits.maxMemberBytes);
    await finish();
  }
}

/** Keeps a leaf's head; keeps on for an archive, up to the member cap. */
class Collector {
  private readonly decoder: Decoder;
  private readonly kept: Buffer[] = [];
  private bytes = 0;
  private archive: boolean | null = null;
  private tooBig = false;

  constructor(
    private readonly node: ContentNode,
    transferEncoding: string,
    private readonly maxBytes: number,
  ) {
    this.decoder = decoderFor(transferEncoding);
  }

  push(encoded: Buffer): void {
    if (this.archive === false || this.tooBig) return;
    this.keep(this.decoder.push(encoded));
  }

  private keep(data: Buffer): void {
    if (data.length === 0 || this.archive === false || this.tooBig) return;
    this.kept.push(data);
    this.bytes += data.length;
    if (this.archive === null && this.bytes >= HEAD_BYTES) this.decide();
    if (this.archive && this.bytes > this.maxBytes) {
      this.tooBig = true;
      this.kept.length = 0;
    }
  }

  private decide(): void {
    const head = Buffer.concat(this.kept).subarray(0, HEAD_BYTES);
    this.node.types = detectType(head);
    this.archive = archiveKind(this.node.types) !== null;
    if (!this.archive) this.kept.length = 0;
  }

  async finish(budget: Budget, signal: AbortSignal): Promise<void> {
    if (this.archive !== false && !this.tooBig) this.keep(this.decoder.end());
    if (this.archive === null) this.decide();
    if (this.tooBig) this.node.limit = 'size';
    else if (this.archive && !this.node.limit) await expand(this.node, Buffer.concat(this.kept), 1, budget, signal);
  }
}
