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
import { Budget, expand, newNode, type ArchiveLimits, type ContentNode } from '../archive/expand';
import { archiveKind } from '../archive/magic';
import type { ExternalUnpacker } from '../archive/external';
import type { ByteBudget, Lease } from '../archive/memory';
import { hasZipEnd } from '../archive/zip';
import { Message } from '../../transaction/message';
import { memorySpool } from '../../transaction/spool';
import { Collector } from './collector';
import { parseParams } from './params';
import { flag, type HeaderFieldText, MAX_MIME_DEPTH, MimeWalker, type Part, TWO_CONTENT_TYPES, twoEncodings } from './structure';

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

/**
 * `memory`: the process-wide budget that whole buffers are reserved in (lib/archive/memory.ts);
 * `unpacker`: lsar and unar for the formats not read in-process (lib/archive/external.ts).
 */
export async function messageContent(message: Message, limits: ArchiveLimits, signal: AbortSignal, memory?: ByteBudget, unpacker?: ExternalUnpacker): Promise<MessageContent> {
  const budget = new Budget(limits, memory, unpacker);
  const counter = { mimeParts: 0 };
  try {
    const root = await walkMessage(message, null, MAX_MIME_DEPTH, budget, counter, signal);
    return { root, budget, mimeParts: counter.mimeParts };
  } finally {
    budget.releaseAll();
  }
}

/**
 * One message's tree: the top-level one (`at` null), or one inside a message/rfc822 part that
 * was base64 or quoted-printable encoded (RFC 2046 5.2.1 forbids it, clients open it anyway),
 * whose entity becomes the part's child `at/1` as when it is not encoded. `maxDepth` is what
 * is left of the MIME depth cap, so nesting counts across such messages.
 */
async function walkMessage(message: Message, at: ContentNode | null, maxDepth: number, budget: Budget, counter: { mimeParts: number }, signal: AbortSignal): Promise<ContentNode> {
  const headers = new Map<Part, Fields>();
  const topTypes = message.get('content-type');
  const topCte = message.get('content-transfer-encoding')[0];
  const walker = new MimeWalker(topTypes[0] && Message.value(topTypes[0]), topCte && Message.value(topCte), {
    maxDepth,
    lineHeadBytes: HEADER_LINE_BYTES,
    onHeader: (part, fields) =>
      headers.set(
        part,
        fields.filter((f) => f.name === 'content-type' || f.name === 'content-disposition'),
      ),
  });
  if (topTypes.length > 1) flag(walker.root, TWO_CONTENT_TYPES);
  if (twoEncodings(message.get('content-transfer-encoding').map((f) => Message.value(f)))) flag(walker.root, 'two different Content-Transfer-Encoding fields');
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
  const leaves: Leaf[] = [];
  const root = nodeOf(walker.root, at ? `${at.path}/1` : walker.root.children.length ? '' : '1', headers);
  const stack: Leaf[] = [{ part: walker.root, node: root }];
  while (stack.length) {
    const { part, node } = stack.pop()!;
    counter.mimeParts++;
    if (part.opaque) node.limit = 'mime-depth';
    if (part.ambiguous && !node.problem) node.problem = `read differently by mail readers: ${part.ambiguous}`;
    if (part.children.length === 0) leaves.push({ part, node });
    const kids = part.children.map((c, i) => ({ part: c, node: nodeOf(c, node.path ? `${node.path}/${i + 1}` : `${i + 1}`, headers) }));
    for (const k of kids) node.children.push(k.node);
    for (let i = kids.length - 1; i >= 0; i--) stack.push(kids[i]);
  }
  const again = await readLeaves(message, leaves, false, maxDepth, budget, counter, signal);
  if (again.length) await readLeaves(message, again, true, maxDepth, budget, counter, signal);
  return root;
}

type Leaf = { part: Part; node: ContentNode };

function nodeOf(part: Part, path: string, headers: Map<Part, Fields>): ContentNode {
  const fields = headers.get(part) ?? [];
  const names: string[] = [];
  const declared: string[] = [part.contentType];
  const node = newNode(path, names, declared);
  for (const f of fields) {
    // A name cut short may have lost its extension: not matched as if whole, but unreadable.
    if (f.truncated) node.problem = `${f.name} field longer than ${HEADER_LINE_BYTES} bytes on one line`;
    const parsed = parseParams(asUnicode(f.value).replace(/\r?\n/g, ''));
    if (f.name === 'content-type') {
      const t = parsed.value.trim().toLowerCase();
      if (t && !declared.includes(t)) declared.push(t);
    }
    // Every value counts: clients differ in which of two they take. Two whose extensions
    // differ within one field are a name made to look like another (an ASCII fallback beside
    // an RFC 2231 name, "resume.pdf" and "résumé.pdf", keeps its extension and is not).
    const values = parsed.params.get(f.name === 'content-type' ? 'name' : 'filename') ?? [];
    for (const v of values) addName(names, v);
    if (new Set(values.map(extension)).size > 1) node.disguise = `${f.name} gives file names with different extensions`;
  }
  return node;
}

/** The last extension of a name, lower case, without what Windows strips at the end. */
function extension(name: string): string {
  const m = /\.([^./\\]*)$/.exec(name.replace(/[\s.]+$/u, ''));
  return m ? m[1].toLowerCase() : '';
}

function addName(names: string[], raw: string): void {
  if (raw === '') return;
  const name = raw.length > MAX_NAME ? raw.slice(-MAX_NAME) : raw;
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
 * order and their ranges do not overlap, so one pass over the body serves them all. Returns
 * the leaves whose end showed a zip end record though their start is no archive: the caller
 * reads those again, whole (`keepAll`), rather than keep every part whole the first time.
 */
async function readLeaves(
  message: Message,
  leaves: Leaf[],
  keepAll: boolean,
  maxDepth: number,
  budget: Budget,
  counter: { mimeParts: number },
  signal: AbortSignal,
): Promise<Leaf[]> {
  const again: Leaf[] = [];
  let i = 0;
  let offset = 0;
  let current: Collector | null = null;
  let leases: Lease[] = [];
  let leased = 0;
  const walks = (node: ContentNode) => budget.unpacker?.walksInto(node) ?? false;
  const open = (leaf: Leaf) => new Collector(leaf.node, leaf.part.transferEncoding, budget.limits.maxMemberBytes, keepAll, walks);
  // A part kept whole reserves its encoded size (never less than what it decodes to). Files
  // uuencoded in text can decode to more (trimmed lines are padded, 45 bytes from "M"): what
  // they hold past it is reserved too, up to maxMemberBytes (the scanner holds no more).
  const reserve = async (leaf: Leaf, c: Collector | null) => {
    if (!c?.keepingWhole) return;
    const need = Math.min(budget.limits.maxMemberBytes, Math.max(c.heldBytes, leases.length ? 0 : leaf.part.bodyEnd - leaf.part.bodyStart));
    if (leases.length && need <= leased) return;
    const lease = await budget.reserve(need - leased, signal);
    if (!lease) return c.drop();
    leases.push(lease);
    leased = need;
  };
  const finish = async (leaf: Leaf) => {
    const c = current!;
    current = null;
    try {
      await finishLeaf(leaf, c);
    } finally {
      for (const l of leases) l.release();
      leases = [];
      leased = 0;
    }
  };
  const finishLeaf = async (leaf: Leaf, c: Collector) => {
    const outcome = c.finish();
    // The text's last line and a file that ends with it are read only now.
    await reserve(leaf, c);
    await uuMembers(leaf.node, c, budget, signal);
    if (outcome === 'read-again') {
      if (!keepAll) again.push(leaf);
      return;
    }
    if (typeof outcome === 'object' && !leaf.node.limit) {
      await walkEncodedMessage(leaf, outcome.message, maxDepth, budget, counter, signal);
      return;
    }
    const data = c.data;
    if (!data || leaf.node.limit || leaf.node.problem) return;
    if (keepAll && !archiveKind(leaf.node.types) && hasZipEnd(data)) leaf.node.types = [...leaf.node.types, 'zip'];
    await expand(leaf.node, data, 1, budget, signal);
  };
  for await (const chunk of message.openBody()) {
    signal.throwIfAborted();
    const chunkEnd = offset + chunk.length;
    while (i < leaves.length) {
      const { part } = leaves[i];
      if (part.bodyStart >= chunkEnd) break;
      current ??= open(leaves[i]);
      const from = Math.max(part.bodyStart, offset) - offset;
      const to = Math.min(part.bodyEnd, chunkEnd) - offset;
      if (to > from) current.push(chunk.subarray(from, to));
      await reserve(leaves[i], current);
      if (part.bodyEnd > chunkEnd) break;
      await finish(leaves[i]);
      i++;
    }
    offset = chunkEnd;
  }
  for (; i < leaves.length; i++) {
    current ??= open(leaves[i]);
    await reserve(leaves[i], current);
    await finish(leaves[i]);
  }
  return again;
}

/** Files uuencoded in a text part (uuencode.ts): members of the part, walked into when archives. */
async function uuMembers(node: ContentNode, c: Collector, budget: Budget, signal: AbortSignal): Promise<void> {
  if (c.uu.overflow) node.limit ??= 'members';
  for (const [i, f] of c.uu.files.entries()) {
    if (budget.members >= budget.limits.maxMembers) return void (node.limit = 'members');
    budget.members++;
    const child = newNode(`${node.path}/${i + 1}`, f.name ? [f.name] : [], []);
    child.types = f.types;
    node.children.push(child);
    if (f.busy) child.limit = 'busy';
    // Too big from a few KB of padded lines looks like evasion (onLimit), not a big file (onTooLarge).
    else if (f.tooBig) child.limit = f.padded ? 'ratio' : 'size';
    else if (f.whole) await expand(child, Buffer.concat(f.chunks), 1, budget, signal);
  }
}

/** A message/rfc822 part that was encoded: its decoded bytes, walked as a message, within the caps. */
async function walkEncodedMessage(leaf: Leaf, data: Buffer, maxDepth: number, budget: Budget, counter: { mimeParts: number }, signal: AbortSignal): Promise<void> {
  const left = maxDepth - leaf.part.depth - 1;
  if (left < 1) return void (leaf.node.limit = 'mime-depth');
  // Decoded bytes count toward the message's total, as inflated ones do.
  if (budget.inflatedBytes + data.length > budget.limits.maxTotalBytes) return void (leaf.node.limit = 'total');
  budget.inflatedBytes += data.length;
  const inner = Message.parse(memorySpool(data));
  leaf.node.children.push(await walkMessage(inner, leaf.node, left, budget, counter, signal));
}
