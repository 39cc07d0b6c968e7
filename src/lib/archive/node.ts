/**
 * The content tree's node (a MIME leaf or an archive member) and what one message may spend
 * walking it (the caps of a bank's banned.limits, the process-wide memory budget and the
 * external unpacker); expand.ts and expand-external.ts fill the tree.
 */
import type { ExternalUnpacker } from './external';
import { archiveKind, type ShortTypes } from './magic';
import type { ByteBudget, Lease } from './memory';
import { localName, type ZipEntry } from './zip';

export interface ContentNode {
  readonly path: string;
  /** Declared file names: MIME filename/name parameters, or the member's name in its archive. */
  readonly names: string[];
  /** Declared MIME types, lower case (none for archive members). */
  readonly declaredTypes: string[];
  /** Detected short types (magic.ts); empty when the bytes could not be read. */
  types: ShortTypes;
  encrypted: boolean;
  /** Which cap stopped the walk here: depth, members, size, total, ratio, mime-depth, busy (memory.ts), time (an unar run, external.ts), archives (maxUnarArchives). */
  limit?: string;
  /** Why the bytes could not be read. */
  problem?: string;
  /** Why a name of the node is made to look like another (two that differ in one field). */
  disguise?: string;
  readonly children: ContentNode[];
}

export interface ArchiveLimits {
  readonly maxDepth: number;
  readonly maxMembers: number;
  readonly maxMemberBytes: number;
  readonly maxTotalBytes: number;
  readonly maxRatio: number;
  /** Output below this size is never a bomb, whatever its ratio. */
  readonly ratioFloorBytes: number;
  /** Archives read through unar (two tool runs each) per message; absent, no cap. */
  readonly maxUnarArchives?: number;
}

/** What one message has spent of its limits; the counters are also the work done, for tests. */
export class Budget {
  members = 0;
  inflatedBytes = 0;
  archivesOpened = 0;
  /** Of those, read through unar (external.ts): each costs two tool runs. */
  unarArchives = 0;
  /**
   * `memory`: the process-wide budget whole buffers are reserved in (memory.ts); none, no cap.
   * `unpacker`: lsar and unar for RAR, 7z, ... (external.ts); none, those are not walked into.
   */
  constructor(
    readonly limits: ArchiveLimits,
    private readonly memory?: ByteBudget,
    readonly unpacker?: ExternalUnpacker,
  ) {}

  /** Whether a node is an archive that is walked into (by its type or, `declared`, its name or declared type), so kept whole. */
  walksInto(node: ContentNode, declared: boolean): boolean {
    return archiveKind(node.types) !== null || declared || (this.unpacker?.walksInto(node) ?? false);
  }

  /** Leases this message holds now. */
  private held = 0;
  /** Leases held until the message's walk ends (`holdUntilEnd`). */
  private readonly untilEnd: Lease[] = [];

  /**
   * Takes `bytes` of the process-wide budget now, without waiting, until `releaseAll`: for bytes
   * kept while an archive streams past (past-cap.ts), where no wait is possible. False when they
   * do not fit now; the caller marks what it could not keep `busy`.
   */
  holdUntilEnd(bytes: number): boolean {
    if (!this.memory) return true;
    const lease = this.memory.tryReserve(bytes);
    if (!lease) return false;
    this.untilEnd.push(lease);
    return true;
  }

  /** The message's walk has ended (parts.ts messageContent): what `holdUntilEnd` took goes back. */
  releaseAll(): void {
    for (const lease of this.untilEnd.splice(0)) lease.release();
  }

  /** A lease on `bytes` of the process-wide budget, or null when it stayed full too long. */
  async reserve(bytes: number, signal: AbortSignal): Promise<Lease | null> {
    if (!this.memory) return { release() {} };
    const lease = await this.memory.reserve(bytes, signal, this.held > 0);
    if (!lease) return null;
    this.held++;
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.held--;
        lease.release();
      },
    };
  }
}

export function newNode(path: string, names: string[], declaredTypes: string[]): ContentNode {
  return { path, names, declaredTypes, types: [], encrypted: false, children: [] };
}

/**
 * The node of a zip entry, numbered after the children `parent` has already (files uuencoded in
 * its text): the directory's names and the local header's (streaming unzippers read that one,
 * Explorer the directory's, unzip the Unicode Path field's: all count), encrypted as flagged.
 * `data` holds the entry's local header (the whole zip, or the tail of one too big to hold).
 */
export function zipMemberNode(parent: ContentNode, data: Buffer, e: ZipEntry): ContentNode {
  const child = newNode(`${parent.path}/${parent.children.length + 1}`, [...e.names], []);
  parent.children.push(child);
  const local = localName(data, e);
  if (local && !child.names.includes(local)) child.names.push(local);
  child.encrypted = e.encrypted && !e.directory;
  return child;
}

/**
 * The names a gunzipped file gets: the one its header carries (RFC 1952 FNAME, what gunzip -N
 * uses) and the outer name with .gz dropped (.tgz giving .tar, what gunzip and most tools use);
 * both, as either may be what the recipient ends up with.
 */
export function gzipNames(data: Buffer, outer: readonly string[]): string[] {
  const names: string[] = [];
  const flags = data[3] ?? 0;
  let at = 10;
  if (flags & 4 && data.length >= 12) at += 2 + data.readUInt16LE(10);
  if (flags & 8 && at < data.length) {
    const end = data.indexOf(0, at);
    // The last KiB of a longer one: its end is the extension a tool that takes it keeps.
    if (end > at) names.push(data.toString('latin1', Math.max(at, end - 1024), end));
  }
  for (const n of outer) {
    const inner = n.replace(/\.t(?:ar\.)?gz$/i, '.tar').replace(/\.gz$/i, '');
    if (inner && inner !== n && !names.includes(inner)) names.push(inner);
  }
  return names;
}
