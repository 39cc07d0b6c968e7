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
 * - the sqlite store's folder exists and is writable (store/index.ts): CFG_STORE_UNUSABLE;
 * - quarantine.dir exists or is created, and a file can be written in it: a warning
 *   (CFG_QUARANTINE_UNUSABLE), not a refusal, as only a quarantine verdict needs it and that
 *   verdict then tempfails with its own log line (docs/quarantine.md).
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
  return [...(config.warnings ?? []), ...loopWarnings, ...(await quarantineWarnings(config.file, config.main.quarantine.dir))];
}

/** Creates the folder if missing and proves that a spool file can be created, written and removed in it. */
export async function prepareSpoolDir(configFile: string, dir: string): Promise<void> {
  const problem = await folderProblem(dir);
  if (problem)
    throw new PostsealError(
      'CFG_SPOOL_UNUSABLE',
      `${configFile}: /spool/dir: ${dir}: ${problem}; create it (mkdir -m 700) owned by the user postseal runs as, or set spool.dir to a folder that user can write`,
    );
}

async function quarantineWarnings(configFile: string, dir: string): Promise<ConfigWarning[]> {
  const problem = await folderProblem(dir);
  if (!problem) return [];
  return [
    {
      code: 'CFG_QUARANTINE_UNUSABLE',
      message: `${configFile}: /quarantine/dir: ${dir}: ${problem}; a quarantine verdict will be a 451 until it is fixed: create it (mkdir -m 700) owned by the user postseal runs as, or set quarantine.dir to a folder that user can write`,
    },
  ];
}

/**
 * Creates the folder if missing and writes and removes a probe file in it; what went wrong, or
 * null. The probe's name is no spool or quarantine file name, so no sweep takes it for one.
 */
async function folderProblem(dir: string): Promise<string | null> {
  try {
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    return `cannot be created (${describe(err)})`;
  }
  const probe = path.join(dir, `.postseal-probe-${process.pid}-${randomBytes(6).toString('hex')}`);
  try {
    await fsp.writeFile(probe, 'postseal probe\n', { flag: 'wx', mode: 0o600 });
  } catch (err) {
    return `postseal cannot write a file in it (${describe(err)})`;
  } finally {
    await fsp.rm(probe, { force: true }).catch(() => undefined);
  }
  return null;
}

/** node's fs messages start with the errno name: "EACCES: permission denied, open '...'". */
function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
