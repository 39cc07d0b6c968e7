/**
 * Writing the key table in place, for `postseal keys activate` (keys/activate.ts):
 *
 * - `replaceFile`: the new text goes into a temp file with a random name in the same folder,
 *   created exclusively (O_EXCL: a file or symlink planted under a guessable name such as
 *   `<file>.<pid>.tmp` cannot redirect the write), given the old file's mode and, when run as
 *   root, its owner (a table owned by the daemon's user must not become root:root 0600, which
 *   the next reload could not read), synced, then renamed over the old file. A postseal reloading
 *   at that moment reads the old file or the new one, never half of one.
 * - `lockKeyTable`: `<file>.lock`, created exclusively and holding the pid, so two activations
 *   cannot interleave their read-modify-write; a lock whose process is gone is taken over.
 *
 * Fails with CFG_KEY_TABLE_LOCKED (another activation runs); file system errors pass through.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fchmodSync, fchownSync, fsyncSync, openSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PostsealError } from '../errors';
import { isProcessAlive } from '../transaction/process-alive';

export function replaceFile(file: string, text: string): void {
  // A symlinked table stays a symlink: its target is what gets replaced.
  const target = realpathSync(file);
  const old = statSync(target);
  const dir = path.dirname(target);
  const tmp = path.join(dir, `.${path.basename(target)}.${randomBytes(8).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    // writeFileSync on a descriptor writes until all is written: one writeSync on a nearly full
    // disk writes what fits without an error, and the table was replaced by its first part.
    writeFileSync(fd, text);
    // Owner first: chown clears set-id bits, and the mode is set after it.
    if (process.getuid?.() === 0) fchownSync(fd, old.uid, old.gid);
    fchmodSync(fd, old.mode & 0o7777);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  try {
    renameSync(tmp, target);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  syncDir(dir);
}

/** The rename itself survives a crash only once the folder is synced. */
function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Some file systems refuse fsync on a folder; the rename has happened all the same.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Takes the lock next to the key table; the returned function releases it. A lock left by an
 * activation that died is taken over under a second, short-lived lock (`.lock.takeover`), so
 * two activations that both find it stale cannot both remove it: the one that loses the race
 * for the takeover lock is refused, and the winner removes the stale lock only if it still
 * names the dead process.
 */
export function lockKeyTable(keyTableFile: string): () => void {
  const lock = `${keyTableFile}.lock`;
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSync(lock, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
      return () => rmSync(lock, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw lockError(err, lock);
      const holder = readHolder(lock);
      // An empty lock younger than a moment is one being written by its holder right now.
      const fresh = holder === null && Date.now() - mtimeOf(lock) < 10_000;
      if (fresh || (holder !== null && isProcessAlive(holder))) {
        throw new PostsealError(
          'CFG_KEY_TABLE_LOCKED',
          `${lock}: another postseal keys activate (pid ${holder ?? 'unknown'}) is changing ${keyTableFile}; wait for it to finish and run this one again`,
        );
      }
      takeOverStale(lock, holder);
    }
  }
}

function takeOverStale(lock: string, deadHolder: number | null): void {
  const takeover = `${lock}.takeover`;
  // A takeover lock is held for microseconds; one older than a minute was left by a crash.
  if (Date.now() - mtimeOf(takeover) > 60_000) rmSync(takeover, { force: true });
  try {
    writeFileSync(takeover, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
  } catch (err) {
    throw lockError(err, lock);
  }
  try {
    // Removed only if it is still the stale lock we judged: another activation may have replaced it.
    if (readHolder(lock) === deadHolder) rmSync(lock, { force: true });
  } finally {
    rmSync(takeover, { force: true });
  }
}

function mtimeOf(file: string): number {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}

function readHolder(lock: string): number | null {
  try {
    const pid = Number(readFileSync(lock, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

function lockError(err: unknown, lock: string): Error {
  if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return err as Error;
  return new PostsealError('CFG_KEY_TABLE_LOCKED', `${lock}: another postseal keys activate took the lock at the same moment; run this one again`, { cause: err });
}
