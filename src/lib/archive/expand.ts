/**
 * The content tree of a message: one node per MIME leaf (lib/mime/parts.ts makes those) and,
 * under a zip, tar, gzip or TNEF (winmail.dat) node, one per member, recursively (a .tar.gz, a zip in a zip); RAR,
 * 7z, cab, xz, bzip2, ISO and BinHex nodes are walked by expand-external.ts when unar is on. A
 * node carries what a banned-files policy looks at: its path ("2/1/3": MIME part 2, its first
 * part, member 3 of that archive), declared names and types, and the type its bytes show.
 *
 * Unpacking is capped per message by `ArchiveLimits` (every cap a bank setting, see
 * stages/banned/schema.ts): nesting depth, members, decompressed bytes per member and in
 * total, and the compression ratio. A cap that stops the walk marks the node where it
 * stopped (`limit`; `time` is an unar run's time limit) and nothing under it is read; an encrypted member is marked `encrypted`
 * (its name is still known); damage (a corrupt stream, a size that lies, an unknown method)
 * is `problem`. Nothing here throws for bad data; only an aborted signal rejects.
 */
import { expandExternal } from './expand-external';
import { inflateBounded } from './inflate';
import { archiveKind, detectType, HEAD_BYTES } from './magic';
import { type Budget, gzipNames, newNode, type ContentNode, zipMemberNode } from './node';
import { paddedInnerArchive } from './padding';
import { scanPastCap, type Walk } from './past-cap';
import { listTar } from './tar';
import { listTnef } from './tnef';
import { hasZipEnd, memberData, readZipDirectory, zipFlavour } from './zip';

export { Budget, newNode, type ArchiveLimits, type ContentNode } from './node';

/**
 * Walks into `node` when its type is an archive: `data` holds all its bytes (a head alone
 * cannot be unpacked), `depth` is 1 for an archive that is not inside another.
 */
export async function expand(node: ContentNode, data: Buffer, depth: number, budget: Budget, signal: AbortSignal): Promise<void> {
  if (node.limit || node.problem) return;
  let kind = archiveKind(node.types);
  // A RAR, 7z, ... by its type, or a .rar behind a prefix (external.ts walksInto).
  const external = !kind && budget.unpacker?.walksInto(node) ? budget.unpacker : null;
  if (!kind && !external && declaresArchive(node)) {
    // unzip finds a zip by its end record, whatever is in front (a GIF, a program): so does
    // this. Anything else that says it is an archive and is none that can be read is damage.
    if (!hasZipEnd(data)) return void (node.problem = 'declared an archive, but is none that can be read');
    kind = 'zip';
    node.types = [...node.types, 'zip'];
  }
  if (!kind && !external) return;
  const { limits } = budget;
  if (depth > limits.maxDepth) return void (node.limit = 'depth');
  if (budget.members >= limits.maxMembers) return void (node.limit = 'members');
  if (budget.inflatedBytes >= limits.maxTotalBytes) return void (node.limit = 'total');
  signal.throwIfAborted();
  if (external) {
    // Tool runs cost ~60 ms each whatever the archive's size: a message of hundreds of tiny 7z
    // would hold the process-wide slots for minutes.
    if (budget.unarArchives >= (limits.maxUnarArchives ?? Number.POSITIVE_INFINITY)) return void (node.limit = 'archives');
    budget.unarArchives++;
  }
  budget.archivesOpened++;
  if (external) {
    const walk = walker(budget, signal);
    await expandExternal(external, node, data, depth, budget, signal, walk, (n) => budget.walksInto(n, declaresArchive(n)));
  } else if (kind === 'zip') await expandZip(node, data, depth, budget, signal);
  else if (kind === 'tar') await expandTar(node, data, depth, budget, signal);
  else if (kind === 'tnef') await expandTnef(node, data, depth, budget, signal);
  else await expandGzip(node, data, depth, budget, signal);
}

/** Zip-based documents: their members are the document's parts, not files to count as an archive's. */
const DOCUMENTS = new Set(['ooxml', 'odf', 'jar', 'apk']);

async function expandZip(node: ContentNode, data: Buffer, depth: number, budget: Budget, signal: AbortSignal): Promise<void> {
  const { limits } = budget;
  const dir = readZipDirectory(data, limits.maxMembers);
  const flavour = zipFlavour(dir.entries);
  if (flavour) node.types = [...node.types, flavour];
  if (dir.problem) node.problem = dir.problem;
  // A document's members (150 .docx of 15 parts each in one zip) do not use up the message's
  // member cap: their names are still checked, and archives inside them still count.
  const counted = !flavour || !DOCUMENTS.has(flavour);
  let entries = dir.entries;
  if (counted && entries.length > limits.maxMembers - budget.members) {
    entries = entries.slice(0, Math.max(0, limits.maxMembers - budget.members));
    node.limit = 'members';
  } else if (dir.truncated) node.limit = 'members';
  for (const e of entries) {
    signal.throwIfAborted();
    if (counted) budget.members++;
    const child = zipMemberNode(node, data, e);
    if (e.directory || child.encrypted) continue;
    const compressed = memberData(data, e);
    if (typeof compressed === 'string') {
      child.problem = compressed;
      continue;
    }
    if (e.method === 0) {
      child.types = detectType(compressed.subarray(0, HEAD_BYTES));
      await expand(child, compressed, depth + 1, budget, signal);
      continue;
    }
    if (e.method !== 8) {
      child.problem = `compression method ${e.method}`;
      continue;
    }
    await inflateMember(child, 'raw', compressed, e.uncompressedSize, depth, budget, signal);
  }
}

async function expandTar(node: ContentNode, data: Buffer, depth: number, budget: Budget, signal: AbortSignal): Promise<void> {
  const listing = listTar(data, budget.limits.maxMembers - budget.members);
  if (listing.problem) node.problem = listing.problem;
  if (listing.truncated) node.limit = 'members';
  const base = node.children.length;
  for (const [i, e] of listing.entries.entries()) {
    signal.throwIfAborted();
    budget.members++;
    const child = newNode(`${node.path}/${base + i + 1}`, [e.name], []);
    node.children.push(child);
    if (!e.file) continue;
    child.types = detectType(e.data.subarray(0, HEAD_BYTES));
    await expand(child, e.data, depth + 1, budget, signal);
  }
}

/**
 * A winmail.dat's attachments (tnef.ts): names and bytes as they are, nothing to inflate. An
 * attachment whose bytes are in two places that differ is a node for each, both named alike.
 */
async function expandTnef(node: ContentNode, data: Buffer, depth: number, budget: Budget, signal: AbortSignal): Promise<void> {
  const listing = listTnef(data, budget.limits.maxMembers - budget.members);
  if (listing.problem) node.problem = `damaged TNEF: ${listing.problem}`;
  if (listing.truncated) node.limit = 'members';
  for (const a of listing.attachments) {
    for (const bytes of a.data.length > 0 ? a.data : [null]) {
      signal.throwIfAborted();
      if (budget.members >= budget.limits.maxMembers) return void (node.limit = 'members');
      budget.members++;
      const child = newNode(`${node.path}/${node.children.length + 1}`, [...a.names], [...a.declaredTypes]);
      node.children.push(child);
      if (!bytes) continue;
      child.types = detectType(bytes.subarray(0, HEAD_BYTES));
      await expand(child, bytes, depth + 1, budget, signal);
    }
  }
}

/** A gzip file holds one file: its name from the header (FNAME) or the outer name without .gz. */
async function expandGzip(node: ContentNode, data: Buffer, depth: number, budget: Budget, signal: AbortSignal): Promise<void> {
  budget.members++;
  const child = newNode(`${node.path}/${node.children.length + 1}`, gzipNames(data, node.names), []);
  node.children.push(child);
  await inflateMember(child, 'gzip', data, -1, depth, budget, signal);
}

/**
 * Inflates a member's head for its type, then, when that is an archive, all of it (within the
 * member and total caps) to walk into. `declared` is the size its directory gave (-1: none);
 * more output than that is a lie and a problem.
 */
async function inflateMember(child: ContentNode, format: 'raw' | 'gzip', compressed: Buffer, declared: number, depth: number, budget: Budget, signal: AbortSignal): Promise<void> {
  const { limits } = budget;
  const room = Math.min(limits.maxMemberBytes, limits.maxTotalBytes - budget.inflatedBytes);
  const caps = { maxBytes: Math.max(0, room), maxRatio: limits.maxRatio, ratioFloorBytes: limits.ratioFloorBytes, signal };
  // The head (HEAD_BYTES) costs little whatever the member is: the ratio and size caps are for
  // what is unpacked whole, an archive. A 2 MiB log zipped 400:1 is read for its type, no more.
  const head = await inflateBounded(format, compressed, { ...caps, maxRatio: Number.POSITIVE_INFINITY, keepBytes: HEAD_BYTES, needAll: false });
  budget.inflatedBytes += head.produced;
  child.types = detectType(head.data);
  if (!noteOutcome(child, head, declared, room, limits.maxMemberBytes)) return;
  if (!budget.walksInto(child, declaresArchive(child))) return;
  // The directory's sizes are checked first (no work for a declared bomb); the inflation
  // checks the real ones, which a crafted archive may hide.
  if (declared > limits.ratioFloorBytes && declared > limits.maxRatio * Math.max(1, compressed.length)) return void (child.limit = 'ratio');
  if (head.complete) return void (await expand(child, head.data, depth + 1, budget, signal));
  // A zip member reserves what its directory declares (more is a lie, damage); gzip declares
  // nothing it must keep to (a multi-member file's trailer has the last member's size only).
  const want = declared >= 0 ? Math.min(room, declared) : room;
  const lease = await budget.reserve(want, signal);
  if (!lease) return void (child.limit = 'busy');
  try {
    const whole = await inflateBounded(format, compressed, { ...caps, maxBytes: want, keepBytes: want, needAll: true });
    budget.inflatedBytes += whole.produced;
    if (whole.limit === 'size' && want < room) return void (child.problem = `larger than the ${declared} bytes the directory declares`);
    if (!noteOutcome(child, whole, declared, room, limits.maxMemberBytes)) {
      paddedInnerArchive(child, whole.produced, compressed.length);
      if (child.limit === 'size' || child.limit === 'total')
        await scanPastCap(child, format, compressed, depth + 1, { budget, signal, walksInto: (n) => budget.walksInto(n, declaresArchive(n)), walk: walker(budget, signal) });
      return;
    }
    await expand(child, whole.data, depth + 1, budget, signal);
  } finally {
    lease.release();
  }
}

/** What past-cap.ts and expand-external.ts walk members with: a zip member's deflate is inflated first, as in expandZip. */
function walker(budget: Budget, signal: AbortSignal): Walk {
  return (node, data, depth, deflated) => (deflated ? inflateMember(node, 'raw', data, deflated.declared, depth - 1, budget, signal) : expand(node, data, depth, budget, signal));
}

/** Marks a cap or damage on the node; false when its bytes cannot be walked into. */
function noteOutcome(child: ContentNode, r: Awaited<ReturnType<typeof inflateBounded>>, declared: number, room: number, perMember: number): boolean {
  if (r.limit) child.limit = r.limit === 'ratio' ? 'ratio' : room < perMember ? 'total' : 'size';
  else if (r.corrupt) child.problem = `corrupt compressed data (${r.corrupt})`;
  else if (declared >= 0 && (r.produced > declared || (r.complete && r.produced !== declared)))
    child.problem = `size ${r.produced} differs from the ${declared} the directory declares`;
  return !child.limit && !child.problem;
}

const ARCHIVE_NAME = /\.(?:zip|jar|war|ear|apk|tar|tgz|taz|gz)[. ]*$/i;
const ARCHIVE_TYPE = new Set([
  'application/zip',
  'application/x-zip',
  'application/x-zip-compressed',
  'application/java-archive',
  'application/x-tar',
  'application/x-gtar',
  'application/gzip',
  'application/x-gzip',
  'application/x-compressed-tar',
]);

/**
 * Whether a node's name or declared type says it is an archive of a kind this unpacks: such a
 * node is kept whole and read even when its first bytes say otherwise (a prefix), and is
 * damage when it cannot be read (a .zip that is none is undecipherable, not a plain file).
 */
export function declaresArchive(node: ContentNode): boolean {
  return node.names.some((n) => ARCHIVE_NAME.test(n)) || node.declaredTypes.some((t) => ARCHIVE_TYPE.has(t));
}
