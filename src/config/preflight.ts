/**
 * The checks of a loaded configuration that need the file system or DNS, which
 * config/load.ts (synchronous, also used by `postseal keys`) does not make. Start-up, SIGHUP
 * reload and `postseal config check` all run `preflight`, so a configuration that passes the
 * check also starts, and one that would fail every large message does not start at all:
 *
 * - spool.dir exists, or is created with mode 0700 (as `postfix check` creates missing
 *   queue folders), and a file can be created in it: otherwise every message over
 *   spool.memoryThresholdBytes would be deferred for ever. Fails with CFG_SPOOL_UNUSABLE;
 * - no bank forwards to postseal's own listeners (config/forward-loops.ts): CFG_INCONSISTENT;
 * - the sqlite store's folder exists and is writable (store/index.ts): CFG_STORE_UNUSABLE.
 *
 * Returns the warnings, the loader's included (key file modes, non-loopback listeners).
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { PostsealError, type ConfigWarning } from '../errors';
import { checkForwardLoops, type LoopCheckDeps } from './forward-loops';
import type { ConfigFiles } from './load';

/** `config.warnings`: what loading already found (key file modes), reported with these. */
export async function preflight(config: ConfigFiles & { readonly warnings?: readonly ConfigWarning[] }, deps: LoopCheckDeps = {}): Promise<ConfigWarning[]> {
  await prepareSpoolDir(config.file, config.main.spool.dir);
  const loopWarnings = await checkForwardLoops(config, deps);
  return [...(config.warnings ?? []), ...loopWarnings];
}

/** Creates the folder if missing and proves that a spool file can be created, written and removed in it. */
export async function prepareSpoolDir(configFile: string, dir: string): Promise<void> {
  const where = `${configFile}: /spool/dir: ${dir}`;
  const fix = 'create it (mkdir -m 700) owned by the user postseal runs as, or set spool.dir to a folder that user can write';
  try {
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new PostsealError('CFG_SPOOL_UNUSABLE', `${where}: cannot be created (${describe(err)}); ${fix}`, { cause: err });
  }
  // Not a spool file name: sweepStaleSpools leaves it alone, and it never outlives this call.
  const probe = path.join(dir, `.postseal-probe-${process.pid}-${randomBytes(6).toString('hex')}`);
  let created = false;
  try {
    const file = await fsp.open(probe, 'wx', 0o600);
    created = true;
    try {
      await file.write(Buffer.from('postseal spool probe\n'));
    } finally {
      await file.close();
    }
  } catch (err) {
    throw new PostsealError('CFG_SPOOL_UNUSABLE', `${where}: postseal cannot write a file in it (${describe(err)}); ${fix}`, { cause: err });
  } finally {
    if (created) await fsp.rm(probe, { force: true });
  }
}

/** node's fs messages start with the errno name: "EACCES: permission denied, open '...'". */
function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
