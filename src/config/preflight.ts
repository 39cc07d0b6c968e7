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
 *   verdict then tempfails with its own log line (docs/quarantine.md);
 * - decoders (lsar, unar): when they are to be used and present, each answers `-v` (a broken
 *   install would make every RAR or 7z a damaged archive): CFG_DECODERS_UNUSABLE; decoders.use
 *   auto with either missing is a warning (CFG_DECODERS_MISSING), unar is a refusal.
 *
 * Returns the warnings, the loader's included (key file modes, non-loopback listeners).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, promises as fsp, statSync } from 'node:fs';
import path from 'node:path';
import { PostsealError, type ConfigWarning } from '../errors';
import { checkForwardLoops, type LoopCheckDeps } from './forward-loops';
import type { ConfigFiles } from './load';
import type { MainConfig } from './main-schema';

/** `config.warnings`: what loading already found (key file modes), reported with these. */
export async function preflight(config: ConfigFiles & { readonly warnings?: readonly ConfigWarning[] }, deps: LoopCheckDeps = {}): Promise<ConfigWarning[]> {
  await prepareSpoolDir(config.file, config.main.spool.dir);
  const loopWarnings = await checkForwardLoops(config, deps);
  const decoderWarnings = await checkDecoders(config.file, config.main.decoders);
  return [...(config.warnings ?? []), ...loopWarnings, ...(await quarantineWarnings(config.file, config.main.quarantine.dir)), ...decoderWarnings];
}

/** Refuses decoders that are to be used and do not run; warns when auto finds them missing. */
async function checkDecoders(configFile: string, d: MainConfig['decoders']): Promise<ConfigWarning[]> {
  if (d.use === 'off') return [];
  const fix = "install Debian's unar (apt install unar), set decoders.lsarPath and decoders.unarPath to where they are, or set decoders.use to off";
  if (d.use === 'auto' && !decodersInstalled(d)) {
    return [
      {
        code: 'CFG_DECODERS_MISSING',
        message: `${configFile}: /decoders: ${d.lsarPath} or ${d.unarPath} is not installed; RAR, 7z, cab, xz, bzip2, ISO and BinHex files are not unpacked: ${fix}`,
      },
    ];
  }
  for (const [key, command] of [
    ['lsarPath', d.lsarPath],
    ['unarPath', d.unarPath],
  ] as const) {
    const problem = await runProblem(command);
    if (problem) throw new PostsealError('CFG_DECODERS_UNUSABLE', `${configFile}: /decoders/${key}: ${command}: ${problem}; ${fix}`);
  }
  return [];
}

/** `command -v` answered within 5 s with exit 0; what went wrong, or null. */
function runProblem(command: string): Promise<string | null> {
  if (!path.isAbsolute(command)) return Promise.resolve('not an absolute path');
  return new Promise((resolve) => {
    execFile(command, ['-v'], { timeout: 5000, env: { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8' } }, (err) => resolve(err ? `does not run (${err.message.split('\n')[0]})` : null));
  });
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

/** Whether lsar and unar are where `decoders` says, executable: what decoders.use auto goes by. */
export function decodersInstalled(d: MainConfig['decoders']): boolean {
  return [d.lsarPath, d.unarPath].every((p) => {
    try {
      accessSync(p, constants.X_OK);
      return statSync(p).isFile();
    } catch {
      return false;
    }
  });
}
