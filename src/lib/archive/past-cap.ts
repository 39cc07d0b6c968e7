/**
 * Archives too big to hold (over maxMemberBytes, expand.ts) read as they stream past, not kept,
 * so that padding in front of a program does not deliver it unchecked: a tar's member headers
 * (tar.ts TarScanner), a zip's central directory from its end (zip.ts, `tail`), and a gzip's
 * content through a second inflation (inflate-nested.ts): its file name (FNAME), the type of its
 * first bytes, and when that is a tar or a zip, its members as above (x.tar.gz in a .gz or a
 * .zip, padded, then invoice.pdf.exe). Members found this way are checked by name and type; an
 * archive in a tar is kept whole as it passes, up to maxMemberBytes for all of them, and handed
 * back (`Kept`) to be walked into as if the tar were held; any other archive among them (in a
 * zip, or past that room) cannot be walked into and is a `size` limit; the archive keeps its own
 * limit. Two levels at most: a gzip in the gzip is a `size` limit.
 *
 * The work is the caps': maxRatio (each level against its input) and what is left of
 * maxTotalBytes (all levels counted as inflated); the signal aborts it. Never throws for bad
 * data: damage in a tar or a gzip's stream is `problem`, a zip whose end is not one gives no
 * members.
 */
import { inflateBounded } from './inflate';
import { inflateNested } from './inflate-nested';
import { detectType, HEAD_BYTES } from './magic';
import { type Budget, type ContentNode, gzipNames, newNode, zipMemberNode } from './node';
import { type ScannedTarEntry, TarScanner } from './tar';
import { memberData, readZipDirectory, TAIL_TOO_SHORT } from './zip';

/** Whether a member found is an archive (expand.ts: by its type, name or declared type). */
export type WalksInto = (node: ContentNode) => boolean;

/**
 * Walks into a member kept whole, `depth` being the member's (expand.ts's `expand`, passed in to
 * keep the import one-way); `deflated`: `data` is a zip member's raw deflate, of that declared
 * size, to inflate first as any zip member is (expand.ts inflateMember).
 */
export type Walk = (node: ContentNode, data: Buffer, depth: number, deflated?: { readonly declared: number }) => Promise<void>;

/** A member of an archive too big to hold, kept as it streamed past, to walk into: a small archive in a tar, a member in a zip's last MiB. */
export interface Kept {
  readonly node: ContentNode;
  readonly data: Buffer;
  readonly deflated?: { readonly declared: number };
}

/** Reads an archive's bytes as they stream past: `push` true when it has all it needs. */
export interface PastReader {
  push(chunk: Buffer): boolean;
  /**
   * `complete`: the stream reached its end (or the reader's). The archives kept whole, for the
   * caller to walk into once the stream is done (a member left unwalked would pass unchecked).
   */
  finish(complete: boolean): Kept[];
}

const ZIP_NAME = /\.(?:zip|jar|war|ear|apk)[. ]*$/i;

/** What a scan past the cap works with: the message's budget, the stage's signal, which members are archives, and how one kept is walked into. */
export interface PastScan {
  readonly budget: Budget;
  readonly signal: AbortSignal;
  readonly walksInto: WalksInto;
  readonly walk: Walk;
}

/**
 * Reads a member that came out of its zip or gzip too big to hold (`size` or `total`), when it
 * is a tar (a program after 2 MiB of padding: an 11 KB .tar.gz), a zip (one the ratio rule of
 * padding.ts lets through, its member over an eighth of maxMemberBytes) or a gzip (one padded
 * under that ratio, holding a tar or a program).
 */
export async function scanPastCap(child: ContentNode, format: 'raw' | 'gzip', compressed: Buffer, depth: number, scan: PastScan): Promise<void> {
  const { budget, signal, walksInto, walk } = scan;
  if (child.types.includes('gz')) return scanGzipPastCap(child, format, compressed, depth, scan);
  const reader = readerFor(child, budget, signal, walksInto);
  if (!reader) return;
  const complete = await streamPast(child, format, compressed, budget, signal, (chunk) => reader.push(chunk));
  for (const k of reader.finish(complete)) await walk(k.node, k.data, depth + 1, k.deflated);
}

/**
 * A tar's or a zip's reader, by the node's type (a zip also by its name: padding may be in
 * front); null for other kinds. Also for members unar writes (expand-external.ts).
 */
export function readerFor(node: ContentNode, budget: Budget, signal: AbortSignal, walksInto: WalksInto): PastReader | null {
  if (node.types.includes('tar')) return tarReader(node, budget, signal, walksInto);
  if (!node.types.includes('zip') && !node.names.some((n) => ZIP_NAME.test(n))) return null;
  // Its kept end, and the copy that joins it, in the process-wide memory budget: without room
  // now, a tempfail (banned stage) rather than the size limit's unchecked delivery.
  if (!budget.holdUntilEnd(2 * ZIP_TAIL_BYTES)) {
    node.limit = 'busy';
    return null;
  }
  return zipReader(node, budget, signal, walksInto);
}

/**
 * Each member is judged as soon as its head is in and its head dropped: kept to the end, the
 * heads of maxMembers members of 32 KiB were 64 MiB held outside any lease (a 320 KB zip).
 * An archive among them is kept whole, up to maxMemberBytes for all of them, and walked into
 * as if the tar were held: a `size` limit, it let a 150 KB padded tar deliver evil.zip's
 * invoice.pdf.exe unchecked; it still is for one too big to keep (nothing is kept of it).
 */
function tarReader(node: ContentNode, budget: Budget, signal: AbortSignal, walksInto: WalksInto): PastReader {
  const kept: Kept[] = [];
  let keptBytes = 0;
  const isArchive = (name: string, head: Buffer) => {
    const n = newNode('', [name], []);
    n.types = detectType(head.subarray(0, HEAD_BYTES));
    return walksInto(n);
  };
  // Room is taken when a member is chosen, before its bytes come, within maxMemberBytes and
  // the process-wide memory budget (held until the message's walk ends: node.ts holdUntilEnd).
  let busy = false;
  const room = (size: number): boolean => {
    if (keptBytes + size > budget.limits.maxMemberBytes) return false;
    if (!budget.holdUntilEnd(size)) {
      busy = true;
      return false;
    }
    keptBytes += size;
    return true;
  };
  const scanner = new TarScanner(Math.max(0, budget.limits.maxMembers - budget.members), HEAD_BYTES, (name, head, size) => isArchive(name, head) && room(size));
  const judge = (entries: ScannedTarEntry[]) => {
    for (const e of entries.splice(0)) {
      budget.members++;
      const member = newNode(`${node.path}/${node.children.length + 1}`, [e.name], []);
      node.children.push(member);
      if (!e.file) continue;
      member.types = detectType(e.head.subarray(0, HEAD_BYTES));
      if (!walksInto(member)) continue;
      // One over HEAD_BYTES had its room taken when chosen; a shorter one takes it now.
      if (e.whole && (e.head.length > HEAD_BYTES || room(e.head.length))) kept.push({ node: member, data: e.head });
      // Not kept for want of memory: a tempfail (banned stage), not an unchecked delivery.
      else member.limit = busy ? 'busy' : 'size';
    }
  };
  return {
    push(chunk) {
      scanner.push(chunk);
      judge(scanner.entries);
      return scanner.done;
    },
    finish() {
      signal.throwIfAborted();
      if (scanner.problem && !node.problem) node.problem = `damaged tar past the size cap (${scanner.problem})`;
      judge(scanner.finish());
      return kept.splice(0);
    },
  };
}

/**
 * A zip too big to hold: its end (ZIP_TAIL_BYTES, the central directory and the members just
 * before it) is kept as it streams past, for every member's name; a member whose bytes are in
 * that end is handed back (`Kept`) to be read as in a zip held: a program after padding (a zip in
 * a zip whose member is over an eighth of maxMemberBytes, which paddedInnerArchive lets through)
 * is judged by its name and type, and evil.zip after the padding is walked into. The
 * directory is found by its size or, when that lies (unzip compensates), by its offset. One
 * larger than that end is not read: a `problem` (padded to hide the names), unless it has more
 * members than the cap has room for (the zip keeps its own limit, as a large honest one would).
 */
const ZIP_TAIL_BYTES = 1024 * 1024;

function zipReader(node: ContentNode, budget: Budget, signal: AbortSignal, walksInto: WalksInto): PastReader {
  // A member's bytes in the end are views of it: kept until walked, at most ZIP_TAIL_BYTES.
  const kept: Buffer[] = [];
  let keptBytes = 0;
  let seen = 0;
  return {
    push(chunk) {
      kept.push(Buffer.from(chunk));
      keptBytes += chunk.length;
      seen += chunk.length;
      while (kept.length > 1 && keptBytes - kept[0].length >= ZIP_TAIL_BYTES) keptBytes -= (kept.shift() as Buffer).length;
      return false;
    },
    finish(complete) {
      if (!complete) return [];
      const tail = Buffer.concat(kept);
      const dir = readZipDirectory(tail, Math.max(0, budget.limits.maxMembers - budget.members), seen - tail.length);
      // Not read, and no honest zip under the member cap has a directory so large (over 500
      // bytes a member): names hidden past what is kept, banned as damage (onLimit).
      if (dir.problem === TAIL_TOO_SHORT && !dir.truncated && !node.problem) node.problem = `${TAIL_TOO_SHORT} (${ZIP_TAIL_BYTES} bytes) past the size cap`;
      const found: Kept[] = [];
      for (const e of dir.entries) {
        signal.throwIfAborted();
        budget.members++;
        const member = zipMemberNode(node, tail, e);
        if (e.directory || member.encrypted) continue;
        const data = memberData(tail, e);
        // A member whose bytes are in the end is walked as in a zip held (evil.zip after the
        // padding was a `size` limit, delivered unchecked); a deflated one is inflated first.
        if (typeof data !== 'string' && e.method === 8) found.push({ node: member, data, deflated: { declared: e.uncompressedSize } });
        else if (typeof data !== 'string' && e.method === 0) {
          member.types = detectType(data.subarray(0, HEAD_BYTES));
          if (walksInto(member)) found.push({ node: member, data });
        } else if (walksInto(member)) member.limit = 'size';
      }
      return found;
    },
  };
}

/** Bytes of a gzip's header kept for its name: FEXTRA (at most 64 KiB) may come before FNAME. */
const GZIP_NAME_BYTES = 12 + 0xffff + 1025;

/**
 * A gzip too big to hold: inflated a second time as its bytes come out of the outer member, its
 * one file a member named as gunzip would name it, typed by its first HEAD_BYTES; a tar or zip
 * is read on (as above), anything else is judged by that head and the stream stopped there.
 */
async function scanGzipPastCap(child: ContentNode, format: 'raw' | 'gzip', compressed: Buffer, depth: number, scan: PastScan): Promise<void> {
  const { budget, signal, walksInto, walk } = scan;
  const { limits } = budget;
  const header: Buffer[] = [];
  let headerBytes = 0;
  const head: Buffer[] = [];
  let headBytes = 0;
  let member: ContentNode | null = null;
  let reader: PastReader | null = null;
  // The member once its head is in (or the stream ended before): its names, type and reader.
  const start = (): boolean => {
    const node = newNode(`${child.path}/${child.children.length + 1}`, gzipNames(Buffer.concat(header), child.names), []);
    child.children.push(node);
    budget.members++;
    member = node;
    const first = Buffer.concat(head);
    node.types = detectType(first);
    reader = readerFor(node, budget, signal, walksInto);
    if (!reader) {
      if (walksInto(node)) node.limit = 'size';
      return true;
    }
    return reader.push(first);
  };
  const r = await inflateNested(format, compressed, {
    maxBytes: Math.max(0, limits.maxTotalBytes - budget.inflatedBytes),
    maxRatio: limits.maxRatio,
    ratioFloorBytes: limits.ratioFloorBytes,
    signal,
    onMiddle: (chunk) => {
      if (headerBytes >= GZIP_NAME_BYTES) return;
      const part = Buffer.from(chunk.subarray(0, GZIP_NAME_BYTES - headerBytes));
      header.push(part);
      headerBytes += part.length;
    },
    onInner: (chunk) => {
      if (reader) return reader.push(chunk);
      if (member) return true;
      const part = Buffer.from(chunk.subarray(0, HEAD_BYTES - headBytes));
      head.push(part);
      headBytes += part.length;
      if (headBytes < HEAD_BYTES) return false;
      if (start()) return true;
      const rest = chunk.subarray(part.length);
      return rest.length > 0 && (reader as PastReader | null)?.push(rest) === true;
    },
  });
  budget.inflatedBytes += r.middle + r.inner;
  if (r.limit === 'ratio') child.limit = 'ratio';
  if (r.corrupt && !child.problem) child.problem = `corrupt compressed data past the size cap (${r.corrupt})`;
  // A file shorter than its head: judged by what there is.
  if (!member && headerBytes > 0 && (r.complete || headBytes > 0)) start();
  // The gzip's file is a level below it; what a tar in it kept whole, two.
  for (const k of (reader as PastReader | null)?.finish(r.complete) ?? []) await walk(k.node, k.data, depth + 2, k.deflated);
}

/**
 * Inflates the whole member once more, keeping nothing, each chunk to `read` (true: it has all
 * it needs): within what is left of maxTotalBytes (counted as inflated) and the bomb ratio,
 * which marks the member. Whether the member came out whole.
 */
async function streamPast(child: ContentNode, format: 'raw' | 'gzip', compressed: Buffer, budget: Budget, signal: AbortSignal, read: (chunk: Buffer) => boolean): Promise<boolean> {
  const { limits } = budget;
  const r = await inflateBounded(format, compressed, {
    keepBytes: 0,
    needAll: true,
    maxBytes: Math.max(0, limits.maxTotalBytes - budget.inflatedBytes),
    maxRatio: limits.maxRatio,
    ratioFloorBytes: limits.ratioFloorBytes,
    signal,
    onData: read,
  });
  budget.inflatedBytes += r.produced;
  if (r.limit === 'ratio') child.limit = 'ratio';
  return r.complete;
}
