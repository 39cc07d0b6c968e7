/**
 * The padding rule: an inner archive of a compressed kind (a zip, a gzip, a 7z) too big to walk
 * into (`size` or `total`) that came out of its member more than INNER_ARCHIVE_RATIO times
 * larger was made to, with stored padding (a harmless file of zeros, then the program) that
 * fills maxMemberBytes from a small message under the bomb ratio: compressed data does not
 * compress again. Too big that way is evasion (`ratio`, onLimit, banned by default), not a
 * large file (`size`, onTooLarge, delivered unchecked by default). A tar, which is not
 * compressed, stays `size` (logs.tar in a zip is ordinary). The kind is the node's first bytes'
 * or its name's: unzip finds a zip by its end record, so the padding may be in front of it
 * (docs.zip whose head is 2 MiB of anything), which the first bytes do not show.
 *
 * Used for members of zip and gzip (expand.ts) and of the formats unar reads
 * (expand-external.ts), each with the compressed size its format gives for the member.
 */
import type { ContentNode } from './node';

export const INNER_ARCHIVE_RATIO = 8;
const COMPRESSED_KINDS = ['zip', 'gz', '7z', 'rar', 'xz', 'bz2', 'cab'];
const COMPRESSED_NAME = /\.(?:zip|jar|war|ear|apk|tgz|taz|gz|7z|rar|xz|txz|bz2|tbz2?|cab)[. ]*$/i;

/** Whether a node is an archive of a compressed kind, by its type or its name. */
export function compressedKind(node: ContentNode): boolean {
  return node.types.some((t) => COMPRESSED_KINDS.includes(t)) || node.names.some((n) => COMPRESSED_NAME.test(n));
}

/**
 * Turns a `size` or `total` limit into `ratio` when the node is a compressed kind and `produced`
 * (bytes it unpacked to, or a lower bound) is over INNER_ARCHIVE_RATIO times `compressedBytes`.
 */
export function paddedInnerArchive(child: ContentNode, produced: number, compressedBytes: number): void {
  if (child.limit !== 'size' && child.limit !== 'total') return;
  if (!compressedKind(child)) return;
  if (produced > INNER_ARCHIVE_RATIO * Math.max(1, compressedBytes)) child.limit = 'ratio';
}
