/**
 * Walks into an archive of a format read by unar (external.ts): RAR, 7-Zip, Cabinet, xz,
 * bzip2, ISO 9660, BinHex. The listing gives every member's name and encrypted flag (a name is checked
 * even when its content cannot be read); one unar run then writes the members with content to
 * stdout in archive order, which is split by the listed sizes: the first HEAD_BYTES of each
 * give its type, and a member that is an archive (by its type or its name) is kept whole, within
 * maxMemberBytes and the process-wide memory budget, and walked into once the run has ended (so
 * no run waits on another's slot).
 *
 * Caps (expand.ts ArchiveLimits): the listing stops at the message's member cap (`members`);
 * every byte unar writes counts against maxTotalBytes (`total`: the run is stopped there, which
 * bounds the CPU a small archive of huge members can cost); an inner archive kept whole is held
 * to maxMemberBytes (`size`) and to the ratio cap against the outer archive's size (`ratio`); one
 * over maxMemberBytes of a compressed kind that came out more than 8 times larger than it is
 * packed in is `ratio` too (padding.ts: padded, not large; what it is packed in is `packed`
 * below), and one that is a tar or zip is read as unar writes it, kept nowhere (past-cap.ts
 * readers: its members' names and types); a run over decoders.timeoutMs is `time`. Damage (a listing that fails, output of another length
 * than listed, unar failing) is `problem`; an archive whose names are encrypted (7z -mhe) is
 * `encrypted`. Members whose size is not listed (xz, bzip2: one member) are read as a stream;
 * in another format such a member (RAR 5's "size unknown") is `problem`, unar writing none of it.
 *
 * An ISO image that also holds a UDF file system (a "bridge" image, what Windows tools make)
 * is `problem` too, its ISO 9660 members still listed: Windows and 7-Zip read the UDF tree,
 * unar only the ISO 9660 one (measured: genisoimage -udf -hide evil.exe lists README.TXT
 * alone in lsar, evil.exe too in 7zz -tudf), and the two may name different files.
 */
import { type ExternalUnpacker, type ListedMember, stderrNote } from './external';
import { detectType, HEAD_BYTES } from './magic';
import type { Lease } from './memory';
import { type Budget, type ContentNode, newNode } from './node';
import { compressedKind, INNER_ARCHIVE_RATIO, paddedInnerArchive } from './padding';
import { type Kept, type PastReader, readerFor, type Walk } from './past-cap';

/** Decides, from a member's head, whether it is kept whole (an archive this project reads). */
export type KeepWhole = (node: ContentNode) => boolean;

/** Single-file compressors: the member's name is the outer one without the extension. */
const STREAM_FORMATS: Record<string, RegExp> = { xz: /\.(?:xz|txz|lzma)$/i, bz2: /\.(?:bz2|bz|tbz2?)$/i };

interface Pending {
  readonly node: ContentNode;
  readonly member: ListedMember;
  head: Buffer[];
  headBytes: number;
  produced: number;
  whole: Buffer[] | null;
  lease: Lease | null;
  decided: boolean;
  /** Most bytes kept whole: the listed size, or for a stream the member and ratio caps. */
  cap: number;
  /** A stream too big to hold, of a compressed kind: read on (not kept) for the padding rule. */
  watching: boolean;
  /** A tar or zip too big to hold, read as it streams past (past-cap.ts). */
  past: PastReader | null;
  /** The small archives its reader kept whole, walked into after the runs. */
  kept: Kept[];
}

export async function expandExternal(
  unpacker: ExternalUnpacker,
  node: ContentNode,
  data: Buffer,
  depth: number,
  budget: Budget,
  signal: AbortSignal,
  walk: Walk,
  keepWhole: KeepWhole,
): Promise<void> {
  const toWalk: Pending[] = [];
  const kept: Kept[] = [];
  // 7-Zip's archive of nothing is its 32-byte signature header alone (next header size 0),
  // which it opens and lsar calls damaged (error 2): nothing to list, nothing to ban.
  if (node.types.includes('7z') && data.length === 32 && data.readBigUInt64LE(20) === 0n) return;
  if (node.types.includes('iso') && hasUdf(data)) node.problem = 'holds a UDF file system, whose files Windows shows and unar does not read';
  try {
    await unpacker.withFile(data, signal, async (file) => {
      const { limits } = budget;
      const listing = await unpacker.list(file, Math.max(0, limits.maxMembers - budget.members), signal);
      if ('problem' in listing) return void (node.problem ??= listing.problem);
      if ('limit' in listing) return void (node.limit = listing.limit);
      if ('encrypted' in listing) return void (node.encrypted = true);
      if (listing.truncated) node.limit = 'members';
      const format = Object.keys(STREAM_FORMATS).find((f) => node.types.includes(f));
      const readable: Pending[] = [];
      // After any the part has already (files uuencoded in its text): one path each.
      const base = node.children.length;
      for (const [i, m] of listing.members.entries()) {
        budget.members++;
        const names = format && listing.members.length === 1 ? streamNames(m.name, node.names, STREAM_FORMATS[format]) : [m.name];
        const child = newNode(`${node.path}/${base + i + 1}`, names, []);
        node.children.push(child);
        if (m.encrypted) child.encrypted = true;
        // Only a single-file compressor lists no size. A RAR 5 member may say "size unknown"
        // (rar a -si): unar -o - writes nothing for it, exit 0 (measured), WinRAR its data.
        else if (!m.noData && m.size < 0 && !format) child.problem = 'no unpacked size listed: unar does not extract it';
        else if (!m.noData)
          readable.push({ node: child, member: m, head: [], headBytes: 0, produced: 0, whole: null, lease: null, decided: false, cap: 0, watching: false, past: null, kept: [] });
      }
      if (readable.length === 0) return;
      // One run for members of listed sizes (split by them); one each for the others, which only
      // single-file compressors have.
      const sized = readable.filter((p) => p.member.size >= 0);
      const runs = sized.length > 0 ? [sized] : [];
      for (const p of readable) if (p.member.size < 0) runs.push([p]);
      for (const run of runs) {
        if (budget.inflatedBytes >= limits.maxTotalBytes) {
          for (const p of run) p.node.limit = 'total';
          continue;
        }
        await extractRun(unpacker, file, run, node, data.length, budget, signal, keepWhole);
        for (const p of run) if (p.whole && !p.node.limit && !p.node.problem) toWalk.push(p);
        for (const p of run) kept.push(...p.kept.splice(0));
      }
    });
    for (const p of toWalk) {
      const whole = Buffer.concat(p.whole!);
      p.whole = null;
      await walk(p.node, whole, depth + 1);
      p.lease?.release();
      p.lease = null;
    }
    // Archives a tar too big to hold kept whole as it streamed past: members of a member.
    for (const k of kept.splice(0)) await walk(k.node, k.data, depth + 2, k.deflated);
  } finally {
    for (const p of toWalk) p.lease?.release();
  }
}

/** One unar run over `run`'s members, split by their listed sizes (one member: as long as it is). */
async function extractRun(
  unpacker: ExternalUnpacker,
  file: string,
  run: Pending[],
  node: ContentNode,
  outerBytes: number,
  budget: Budget,
  signal: AbortSignal,
  keepWhole: KeepWhole,
): Promise<void> {
  const { limits } = budget;
  const stream = run.length === 1 && run[0].member.size < 0;
  // What a member is packed in, for the padding rule: its listed packed size (its solid
  // block's, external.ts), at most the archive's own size, which a listing cannot exceed
  // honestly; the archive's own size where none is listed and for xz and bzip2, whose one
  // member is the whole file.
  const packed = (p: Pending) => (stream || p.member.compressed <= 0 ? outerBytes : Math.min(p.member.compressed, outerBytes));
  let at = 0;
  let overTotal = false;
  let longer = false;
  /** Nothing left to read: the last member's type is known and it is not kept whole. */
  let done = false;
  const decide = async (p: Pending) => {
    p.decided = true;
    p.node.types = detectType(Buffer.concat(p.head));
    if (!keepWhole(p.node)) return void (p.head = []);
    // A listed size is checked before a byte of the rest is kept; a stream's as it grows (take).
    const ratioCap = Math.max(limits.ratioFloorBytes, limits.maxRatio * Math.max(1, outerBytes));
    if (p.member.size > limits.maxMemberBytes) {
      p.node.limit = 'size';
      paddedInnerArchive(p.node, p.member.size, packed(p));
      readPast(p, p.head);
      // Read on to the size listed, keeping nothing: a listing that lies (a RAR's stored 300 KB
      // inner.7z listed at 2 MiB, which unar extracts) made a small archive `size`, unchecked,
      // when the run stopped here; a short member is damage at the run's end.
      p.watching = p.node.limit === 'size' && !p.past;
      return;
    }
    if (p.member.size > ratioCap) return void (p.node.limit = 'ratio');
    p.cap = p.member.size >= 0 ? p.member.size : Math.min(limits.maxMemberBytes, ratioCap);
    p.lease = await budget.reserve(p.cap, signal);
    if (!p.lease) return void (p.node.limit = 'busy');
    p.whole = p.head;
  };
  const take = async (p: Pending, bytes: Buffer): Promise<void> => {
    p.produced += bytes.length;
    if (!p.decided) {
      const head = bytes.subarray(0, HEAD_BYTES - p.headBytes);
      p.head.push(head);
      p.headBytes += head.length;
      if (p.headBytes < HEAD_BYTES) return;
      await decide(p);
      bytes = bytes.subarray(head.length);
    }
    if (p.past && bytes.length > 0 && p.past.push(bytes)) endPast(p, true);
    if (p.watching) {
      paddedInnerArchive(p.node, p.produced, packed(p));
      p.watching = p.node.limit === 'size';
      return;
    }
    if (!p.whole || bytes.length === 0) return;
    if (p.produced <= p.cap) return void p.whole.push(bytes);
    p.node.limit = p.cap < limits.maxMemberBytes ? 'ratio' : 'size';
    const kept = [...p.whole, bytes];
    p.whole = null;
    p.lease?.release();
    p.lease = null;
    paddedInnerArchive(p.node, p.produced, packed(p));
    readPast(p, kept);
    // A stream's size is known only at its end: a compressed kind is read on (counted against
    // maxTotalBytes, kept nowhere) until it is over the padding rule's ratio or has ended, at
    // most INNER_ARCHIVE_RATIO times the archive's size.
    p.watching = stream && p.node.limit === 'size' && compressedKind(p.node) && p.produced <= INNER_ARCHIVE_RATIO * packed(p);
  };
  // A tar or zip too big to hold is read as it streams past: its members' names and types (a
  // program after padding), as past-cap.ts does for zip and gzip members; the bytes so far first.
  const readPast = (p: Pending, first: Buffer[]) => {
    if (p.node.limit !== 'size') return;
    p.past = readerFor(p.node, budget, signal, keepWhole);
    // Chunk by chunk: a zip's reader keeps only the last MiB of what was held.
    for (const chunk of first) if (p.past?.push(chunk)) endPast(p, true);
  };
  const last = run[run.length - 1];
  const r = await unpacker.extract(
    file,
    run.map((p) => p.member.index),
    signal,
    async (chunk) => {
      budget.inflatedBytes += chunk.length;
      if (budget.inflatedBytes > limits.maxTotalBytes) return !(overTotal = true);
      let rest = chunk;
      while (rest.length > 0) {
        const p = run[at];
        if (!p) return !(longer = true);
        const piece = stream ? rest : rest.subarray(0, p.member.size - p.produced);
        rest = rest.subarray(piece.length);
        await take(p, piece);
        if (!stream && p.produced === p.member.size) {
          if (!p.decided) await decide(p);
          endPast(p, true);
          at++;
        }
      }
      // Reading on would only decompress what no check looks at.
      if (last.decided && !last.whole && !last.watching && !last.past) return !(done = true);
      return true;
    },
  );
  // A stream's end is the run's; a listed member still being read did not come out whole.
  for (const p of run) endPast(p, stream && !overTotal && !r.timedOut && !r.spawnError && r.code === 0);
  for (const p of run) if (p.member.size === 0 && !p.decided) await decide(p);
  if (stream && !last.decided && last.produced > 0) await decide(last);
  if (overTotal) {
    for (const p of run.slice(at)) {
      if (!p.node.limit && (!p.decided || p.whole)) p.node.limit = 'total';
      paddedInnerArchive(p.node, Math.max(p.member.size, p.produced), packed(p));
    }
    return;
  }
  if (done) return;
  if (r.timedOut) return void (node.limit = 'time');
  if (r.spawnError) return void (node.problem = `unar could not run (${r.spawnError})`);
  const listed = run.reduce((n, p) => n + Math.max(0, p.member.size), 0);
  const produced = run.reduce((n, p) => n + p.produced, 0);
  if (longer || (!stream && run.slice(at).some((p) => p.member.size > 0))) {
    node.problem = `unar wrote ${longer ? 'more than' : `${produced} of`} the ${listed} bytes listed (exit ${r.code}${stderrNote(r.stderr)})`;
  } else if (r.code !== 0) node.problem = `unar failed (exit ${r.code}${stderrNote(r.stderr)})`;
}

function endPast(p: Pending, complete: boolean): void {
  if (p.past) p.kept.push(...p.past.finish(complete));
  p.past = null;
}

/** A single-file compressor's member: the outer names without the extension (.txz, .tbz: .tar), and unar's. */
function streamNames(listed: string, outer: readonly string[], extension: RegExp): string[] {
  const names: string[] = [];
  for (const n of outer) {
    const inner = n.replace(/\.t(?:xz|bz2?)$/i, '.tar').replace(extension, '');
    if (inner && inner !== n && !names.includes(inner)) names.push(inner);
  }
  if (listed && listed !== 'archive' && !names.includes(listed)) names.push(listed);
  return names;
}

/**
 * Whether an ISO image carries a UDF volume recognition sequence (ECMA-167 2/8.3: BEA01, then
 * NSR02 or NSR03) among the 2 KiB descriptors from sector 16, where its ISO 9660 ones also are.
 */
function hasUdf(data: Buffer): boolean {
  for (let sector = 16; sector < 16 + 64 && (sector + 1) * 2048 <= data.length; sector++) {
    const id = data.toString('latin1', sector * 2048 + 1, sector * 2048 + 6);
    if (id === 'NSR02' || id === 'NSR03') return true;
    if (id === 'TEA01' || !/^[A-Z0-9]{5}$/.test(id)) return false;
  }
  return false;
}
