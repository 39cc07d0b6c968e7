/**
 * The quarantine folder on disk (main config `quarantine.dir`): per held message `<id>.eml`,
 * the message exactly as received, and `<id>.json`, what held it (record.ts). Every file is
 * written atomically: a temp file opened with O_EXCL and mode 0600, written, fsync'd, renamed
 * into place, then the folder fsync'd, so a crash leaves either the whole file or none. The
 * .json is written after the .eml: it is the commit point, and a .eml without one is a
 * leftover the sweep removes.
 *
 * Fails with QUARANTINE_FAILED (folder missing or not writable, disk full below
 * quarantine.minFreeBytes, any write error), its cause keeping the errno.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { PostsealError } from '../errors';
import { writeFully } from '../transaction/write-fully';

/** Quarantine ids: what id.ts makes; anything else never names a file (no path tricks from the command line). */
export const ID_PATTERN = /^[a-z0-9]{20,40}$/;
const TEMP_PREFIX = '.tmp-';

export interface FolderOptions {
  readonly dir: string;
  readonly minFreeBytes: number;
}

export function isId(id: string): boolean {
  return ID_PATTERN.test(id);
}

export function fileOf(dir: string, id: string, ext: 'eml' | 'json' | 'released.json' | 'releasing'): string {
  if (!isId(id)) throw new RangeError(`not a quarantine id: ${JSON.stringify(id.slice(0, 80))}`);
  return path.join(dir, `${id}.${ext}`);
}

function failed(dir: string, what: string, err: unknown): PostsealError {
  const errno = (err as NodeJS.ErrnoException | undefined)?.code;
  return new PostsealError('QUARANTINE_FAILED', `quarantine folder ${dir}: ${what}${errno ? ` (${errno})` : ''}`, { cause: err });
}

/** Creates the folder (mode 0700) if missing; start-up and the first hold call it. */
export async function ensureFolder(dir: string): Promise<void> {
  try {
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw failed(dir, 'cannot be created', err);
  }
}

/** Refuses to write when the file system has less than minFreeBytes available: a full disk would hurt Postfix too. */
export async function checkSpace(opts: FolderOptions): Promise<void> {
  if (opts.minFreeBytes === 0) return;
  let free: number;
  try {
    const s = await fsp.statfs(opts.dir);
    free = s.bavail * s.bsize;
  } catch (err) {
    throw failed(opts.dir, 'cannot be read', err);
  }
  if (free < opts.minFreeBytes) throw failed(opts.dir, `full: ${free} bytes free, quarantine.minFreeBytes is ${opts.minFreeBytes}`, undefined);
}

/**
 * Writes `file` atomically from `chunks`: temp file (O_EXCL, 0600) in the same folder, fsync,
 * rename over any older copy, fsync of the folder. On any failure the temp file is removed.
 */
export async function writeAtomically(file: string, chunks: AsyncIterable<Buffer> | Iterable<Buffer>): Promise<number> {
  const dir = path.dirname(file);
  const temp = path.join(dir, `${TEMP_PREFIX}${process.pid}-${randomBytes(8).toString('hex')}`);
  let handle: fsp.FileHandle | undefined;
  let bytes = 0;
  try {
    handle = await fsp.open(temp, 'wx', 0o600);
    await ownLikeFolder(handle, dir);
    for await (const chunk of chunks) {
      // Whole or an error: a near-full disk writes part of a chunk without one (transaction/write-fully.ts).
      await writeFully(handle, chunk);
      bytes += chunk.length;
    }
    await handle.sync();
    await handle.close();
    handle = undefined;
    await fsp.rename(temp, file);
    await syncFolder(dir);
    return bytes;
  } catch (err) {
    await handle?.close().catch(() => undefined);
    await fsp.rm(temp, { force: true }).catch(() => undefined);
    throw failed(dir, `cannot write ${path.basename(file)}`, err);
  }
}

/**
 * Run as root (`sudo postseal quarantine release`), a new file would be root's, mode 0600: the
 * daemon and a later command as the postseal user could not read it (a release record read as
 * "never released" is a second delivery). Root gives it to the folder's owner instead.
 */
async function ownLikeFolder(handle: fsp.FileHandle, dir: string): Promise<void> {
  if (process.getuid?.() !== 0) return;
  const st = await fsp.stat(dir);
  if (st.uid !== 0 || st.gid !== 0) await handle.chown(st.uid, st.gid);
}

/** fsync of the folder makes the rename itself durable (ext4 and xfs need it). */
async function syncFolder(dir: string): Promise<void> {
  const d = await fsp.open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

export async function exists(file: string): Promise<boolean> {
  try {
    await fsp.access(file);
    return true;
  } catch {
    return false;
  }
}

export interface FolderEntry {
  readonly name: string;
  readonly mtimeMs: number;
}

/** Every file of the folder with its modification time; [] when the folder is missing. */
export async function listFolder(dir: string): Promise<FolderEntry[]> {
  const names = await fsp.readdir(dir).catch(() => [] as string[]);
  const out: FolderEntry[] = [];
  for (const name of names) {
    const st = await fsp.stat(path.join(dir, name)).catch(() => null);
    if (st?.isFile()) out.push({ name, mtimeMs: st.mtimeMs });
  }
  return out;
}

export function isTempFile(name: string): boolean {
  return name.startsWith(TEMP_PREFIX);
}
