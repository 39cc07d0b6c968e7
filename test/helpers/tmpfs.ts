/**
 * A small real file system that fills up: a tmpfs mounted for the test (root only; CI runs as
 * root). Nothing mocked: writes past its size fail with ENOSPC, or come back short, as on a
 * full disk. A test that cannot mount fails with a message that says why (the project's rule
 * is "fails, never skips").
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, promises as fsp, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface SmallDisk {
  readonly dir: string;
  /** Fills the file system until at most `leaveBytes` are free (a filler file, whole pages). */
  fill(leaveBytes?: number): Promise<void>;
  /** Removes the filler: the space is back. */
  free(): Promise<void>;
  /** Unmounts and removes the mount point; safe to call twice. */
  unmount(): void;
}

const FILLER = '.filler';

/** On a new folder, or over `at` (a folder a running postseal already uses: its next files go to the small disk). */
export function mountSmallDisk(sizeBytes = 256 * 1024, at?: string): SmallDisk {
  const dir = at ?? mkdtempSync(path.join(tmpdir(), 'small-disk-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},mode=0700`, 'tmpfs', dir], { stdio: 'pipe' });
  } catch (err) {
    if (!at) rmSync(dir, { recursive: true, force: true });
    throw new Error(
      `cannot mount a ${sizeBytes}-byte tmpfs on ${dir} for a full-disk test (${(err as Error).message.trim()}); these tests need root (CI runs as root): run jest as root`,
    );
  }
  let mounted = true;
  const filler = path.join(dir, FILLER);
  return {
    dir,
    async fill(leaveBytes = 0) {
      const { bavail, bsize } = await fsp.statfs(dir);
      const want = Math.max(0, bavail * bsize - leaveBytes);
      const f = await fsp.open(filler, 'a');
      try {
        // Chunks, so that a short write near the end only stops the filling.
        for (let left = want; left > 0; ) {
          const { bytesWritten } = await f.write(Buffer.alloc(Math.min(left, 64 * 1024)));
          if (bytesWritten === 0) break;
          left -= bytesWritten;
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      } finally {
        await f.close();
      }
    },
    async free() {
      await fsp.rm(filler, { force: true });
    },
    unmount() {
      if (!mounted) return;
      mounted = false;
      execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
      if (!at) rmSync(dir, { recursive: true, force: true });
    },
  };
}
