/**
 * Archives too big to hold (over maxMemberBytes, expand.ts) read as they stream past, not kept,
 * so that padding in front of a program does not deliver it unchecked: a tar's member headers
 * (tar.ts TarScanner), a zip's central directory from its end (zip.ts, `tail`). Members found
 * this way are checked by name and type; an archive among them cannot be walked into (its bytes
 * are gone) and is a `size` limit; the archive keeps its own limit. The work is the caps':
 * maxRatio and what is left of maxTotalBytes (counted as inflated), the signal aborts it.
 * Never throws for bad data: damage in a tar is `problem`, a zip whose end is not one gives no
 * members.
 */
import { inflateBounded } from './inflate';
import { detectType, HEAD_BYTES } from './magic';
import { type Budget, type ContentNode, newNode, zipMemberNode } from './node';
import { TarScanner } from './tar';
import { memberData, readZipDirectory } from './zip';

/** Whether a member found is an archive (expand.ts: by its type, name or declared type). */
export type WalksInto = (node: ContentNode) => boolean;

/**
 * Reads a member that came out of its zip or gzip too big to hold (`size` or `total`), when it
 * is a tar (a program after 2 MiB of padding: an 11 KB .tar.gz) or a zip (one the ratio rule
 * of expand.ts lets through, its member over an eighth of maxMemberBytes).
 */
export async function scanPastCap(child: ContentNode, format: 'raw' | 'gzip', compressed: Buffer, budget: Budget, signal: AbortSignal, walksInto: WalksInto): Promise<void> {
  if (child.types.includes('tar')) return scanTarPastCap(child, format, compressed, budget, signal, walksInto);
  if (child.types.includes('zip') || child.names.some((n) => ZIP_NAME.test(n))) return scanZipPastCap(child, format, compressed, budget, signal, walksInto);
}

async function scanTarPastCap(child: ContentNode, format: 'raw' | 'gzip', compressed: Buffer, budget: Budget, signal: AbortSignal, walksInto: WalksInto): Promise<void> {
  const { limits } = budget;
  const scanner = new TarScanner(Math.max(0, limits.maxMembers - budget.members), HEAD_BYTES);
  await streamPast(child, format, compressed, budget, signal, (chunk) => {
    scanner.push(chunk);
    return scanner.done;
  });
  if (scanner.problem && !child.problem) child.problem = `damaged tar past the size cap (${scanner.problem})`;
  for (const e of scanner.finish()) {
    signal.throwIfAborted();
    budget.members++;
    const member = newNode(`${child.path}/${child.children.length + 1}`, [e.name], []);
    child.children.push(member);
    if (!e.file) continue;
    member.types = detectType(e.head);
    if (walksInto(member)) member.limit = 'size';
  }
}

/**
 * A zip too big to hold: its end (ZIP_TAIL_BYTES, the central directory and the members just
 * before it) is kept as it streams past, for every member's name, and the type of a stored one
 * whose head is in that end: a program after padding (a zip in a zip whose member is over an
 * eighth of maxMemberBytes, which paddedInnerArchive lets through) is judged by its name. A
 * directory larger than that end is not read (the zip keeps its own limit, nothing more).
 */
const ZIP_TAIL_BYTES = 1024 * 1024;
const ZIP_NAME = /\.(?:zip|jar|war|ear|apk)[. ]*$/i;

async function scanZipPastCap(child: ContentNode, format: 'raw' | 'gzip', compressed: Buffer, budget: Budget, signal: AbortSignal, walksInto: WalksInto): Promise<void> {
  const { limits } = budget;
  const kept: Buffer[] = [];
  let keptBytes = 0;
  const complete = await streamPast(child, format, compressed, budget, signal, (chunk) => {
    kept.push(Buffer.from(chunk));
    keptBytes += chunk.length;
    while (kept.length > 1 && keptBytes - kept[0].length >= ZIP_TAIL_BYTES) keptBytes -= (kept.shift() as Buffer).length;
    return false;
  });
  if (!complete) return;
  const tail = Buffer.concat(kept);
  const dir = readZipDirectory(tail, Math.max(0, limits.maxMembers - budget.members), true);
  for (const e of dir.entries) {
    signal.throwIfAborted();
    budget.members++;
    const member = zipMemberNode(child, tail, e);
    if (e.directory || member.encrypted) continue;
    const data = memberData(tail, e);
    if (e.method === 0 && typeof data !== 'string') member.types = detectType(data.subarray(0, HEAD_BYTES));
    if (walksInto(member)) member.limit = 'size';
  }
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
