/**
 * The archive formats this project does not read in-process (RAR, 7-Zip, Microsoft Cabinet,
 * xz, bzip2, ISO 9660 images, and BinHex, which encodes one file as text), read through The Unarchiver's command-line tools (Debian
 * package `unar`): `lsar -j` lists the members as JSON, `unar -o -` writes members to stdout.
 * amavisd-new does the same with its @decoders (unrar, 7z, cabextract, ...).
 *
 * Why these tools: one pair reads all seven formats, RAR 1.5 to 5 included (Debian's 7zip reads
 * no RAR without the non-free 7zip-rar), lists an encrypted flag per member, extracts members
 * by index (no wildcard in a member name can widen the selection), and writes them to stdout,
 * so nothing but the archive itself is put on disk. They start in about 25 ms (measured here).
 *
 * Safety: no shell and a minimal environment; the archive is a 0600 file we name, in a private
 * folder (0700) under spool.dir, removed afterwards; each run has a time limit (`timeoutMs`) and
 * is killed (SIGKILL) when the stage's signal aborts; stdout and stderr are read with caps; at
 * most `maxProcesses` runs at once per process, the others wait (ProcessSlots); each run's
 * data segment is limited (`memoryBytes`, `ulimit -d` in /bin/sh before it execs the tool):
 * lsar builds a 7z's whole listing before it writes a byte, and a 49 KB 7z of 300,000 empty
 * files took it 646 MB and 52 s (measured; 2.2 GB at a million), where listing and unpacking
 * ordinary archives took 20-23 MB.
 * `unar -o -` checks no CRC (measured: a 7z whose member was corrupted extracts with exit 0),
 * so expand-external.ts splits its output by the listed sizes, and a length that differs is damage.
 */
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';

/** The short types (magic.ts) unar reads for this project, and what a bank can name. */
export const EXTERNAL_FORMATS = ['rar', '7z', 'cab', 'xz', 'bz2', 'iso', 'hqx'] as const;
export type ExternalFormat = (typeof EXTERNAL_FORMATS)[number];

export interface ExternalSettings {
  readonly lsar: string;
  readonly unar: string;
  readonly formats: readonly string[];
  readonly timeoutMs: number;
  readonly maxProcesses: number;
  /** Where the archive file is written for the tools (spool.dir). */
  readonly tmpDir: string;
  /** Most bytes of data segment (heap) one run may have; DEFAULT_MEMORY_BYTES when absent. */
  readonly memoryBytes?: number;
}

/** 1 GiB: fifty times what ordinary archives took, and room for a large RAR5 dictionary. */
export const DEFAULT_MEMORY_BYTES = 1024 * 1024 * 1024;
/** Sets the limit, then becomes the tool (same pid, so a kill reaches it). */
const LIMITED_EXEC = 'ulimit -d "$1" && shift && exec "$@"';

export interface ListedMember {
  readonly index: number;
  readonly name: string;
  /** Bytes it unpacks to; -1 when the format does not say (xz, bzip2). */
  readonly size: number;
  /**
   * Bytes it is packed in (lsar's XADCompressedSize), for the padding rule (padding.ts); in a
   * solid block (7z, cab: lsar gives the block's size on one of its members, 0 on the others)
   * the whole block's, the least the member is known to be packed in; -1 when not listed.
   */
  readonly compressed: number;
  readonly encrypted: boolean;
  /** A directory, link or resource fork: a name, no content to read. */
  readonly noData: boolean;
}

export type Listing =
  | { readonly members: ListedMember[]; readonly truncated: boolean }
  | { readonly encrypted: true }
  | { readonly problem: string }
  | { readonly limit: 'time' | 'members' };

/**
 * Runs at once, one count per process shared by every bank; `max` is given per run (the
 * configuration's, which a reload may change). A wait ends with the signal.
 */
export class ProcessSlots {
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  /** Runs holding a slot now. */
  get inUse(): number {
    return this.running;
  }

  async acquire(max: number, signal: AbortSignal): Promise<() => void> {
    signal.throwIfAborted();
    if (this.running >= max) {
      await new Promise<void>((resolve, reject) => {
        const go = () => {
          signal.removeEventListener('abort', stop);
          resolve();
        };
        const stop = () => {
          const i = this.waiting.indexOf(go);
          if (i >= 0) this.waiting.splice(i, 1);
          reject(signal.reason);
        };
        this.waiting.push(go);
        signal.addEventListener('abort', stop, { once: true });
      });
    } else this.running++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      // The slot passes to the next waiter as it is, so `running` stays.
      if (next) next();
      else this.running--;
    };
    // Handed the slot, the waiter may have been aborted before it ran on (its listener is gone
    // by then): a run started now would hold the slot to its time limit for nobody.
    if (signal.aborted) {
      release();
      throw signal.reason;
    }
    return release;
  }
}

/** What a run ended with. `killed`: by us (the consumer stopped, the time limit, the signal). */
interface RunResult {
  readonly code: number | null;
  readonly timedOut: boolean;
  readonly stderr: string;
  readonly spawnError?: string;
}

const LIST_OUTPUT_PER_MEMBER = 4096;
/** A RAR's name (Windows drops trailing dots and spaces). */
const RAR_NAME = /\.rar[. ]*$/i;
const MAX_STDERR = 4096;
const ENV = { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8' };

export class ExternalUnpacker {
  readonly formats: ReadonlySet<string>;
  constructor(
    readonly settings: ExternalSettings,
    private readonly slots: ProcessSlots,
  ) {
    this.formats = new Set(settings.formats);
  }

  /** Whether these short types are a format this unpacker reads. */
  reads(types: readonly string[]): boolean {
    return types.some((t) => this.formats.has(t));
  }

  /**
   * Whether a file is one for unar: by its type, or by a .rar name whatever its first bytes.
   * WinRAR finds the RAR marker past any prefix (not only a program's: text will do), and so
   * does lsar ("Embedded RAR"), where the type by magic bytes says txt or dat.
   */
  walksInto(node: { readonly types: readonly string[]; readonly names: readonly string[] }): boolean {
    return this.reads(node.types) || (this.formats.has('rar') && node.names.some((n) => RAR_NAME.test(n)));
  }

  /** Runs `fn` with `data` in a private file (0600 in a 0700 folder), removed afterwards. */
  async withFile<T>(data: Buffer, signal: AbortSignal, fn: (file: string) => Promise<T>): Promise<T> {
    signal.throwIfAborted();
    const dir = await fsp.mkdtemp(path.join(this.settings.tmpDir, 'postseal-unar-'));
    try {
      const file = path.join(dir, 'archive');
      await fsp.writeFile(file, data, { mode: 0o600, flag: 'wx' });
      return await fn(file);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  }

  /** The members of the archive in `file`, at most `maxMembers` (then `truncated`). */
  async list(file: string, maxMembers: number, signal: AbortSignal): Promise<Listing> {
    const cap = Math.max(64 * 1024, (maxMembers + 1) * LIST_OUTPUT_PER_MEMBER);
    const out: Buffer[] = [];
    let size = 0;
    let over = false;
    const r = await this.run(this.settings.lsar, ['-j', '-nr', file], signal, (chunk) => {
      size += chunk.length;
      if (size > cap) return !(over = true);
      out.push(chunk);
      return true;
    });
    if (r.spawnError) return { problem: `lsar could not run (${r.spawnError})` };
    if (r.timedOut) return { limit: 'time' };
    // The header of an archive whose names are encrypted (7z -mhe) cannot be read without the password.
    if (/requires a password/i.test(r.stderr)) return { encrypted: true };
    // A listing that long has far more members than the message may have: the member cap, not damage.
    if (over) return { limit: 'members' };
    let json: { lsarError?: number; lsarContents?: unknown };
    try {
      json = JSON.parse(Buffer.concat(out).toString('utf8'));
    } catch {
      return { problem: `lsar's listing is not JSON (exit ${r.code}${stderrNote(r.stderr)})` };
    }
    if (!Array.isArray(json.lsarContents) || (json.lsarError ?? 0) !== 0)
      return { problem: `cannot be listed: damaged, or one volume of several (lsar error ${json.lsarError ?? r.code}${stderrNote(r.stderr)})` };
    // lsar lists garbage after a RAR marker as an archive of nothing, where WinRAR calls it damaged.
    if (json.lsarContents.length === 0) return { problem: 'lists no members: damaged, or empty' };
    const entries = json.lsarContents as Record<string, unknown>[];
    const packed = packedSizes(entries);
    const members: ListedMember[] = [];
    for (const [i, e] of entries.entries()) {
      if (members.length >= maxMembers) return { members, truncated: true };
      const index = typeof e.XADIndex === 'number' ? e.XADIndex : members.length;
      const name = typeof e.XADFileName === 'string' ? e.XADFileName : '';
      const size = typeof e.XADFileSize === 'number' && e.XADFileSize >= 0 ? e.XADFileSize : -1;
      const noData = e.XADIsDirectory === 1 || e.XADIsLink === 1 || e.XADIsResourceFork === 1;
      members.push({ index, name, size, compressed: packed[i], encrypted: e.XADIsEncrypted === 1, noData });
    }
    return { members, truncated: false };
  }

  /**
   * Writes the members at `indexes` to `consume`, one after the other in archive order (unar's
   * order whatever the order asked). `consume` resolves false to stop the run (it is killed).
   */
  async extract(file: string, indexes: readonly number[], signal: AbortSignal, consume: (chunk: Buffer) => Promise<boolean>): Promise<RunResult> {
    return this.run(this.settings.unar, ['-q', '-nr', '-k', 'skip', '-o', '-', '-i', file, ...indexes.map(String)], signal, consume);
  }

  /** One run of a tool, its stdout to `consume` (false: stop and kill it), with the slot, the time limit and the signal. */
  private async run(command: string, args: string[], signal: AbortSignal, consume: (chunk: Buffer) => boolean | Promise<boolean>): Promise<RunResult> {
    const release = await this.slots.acquire(this.settings.maxProcesses, signal);
    try {
      return await new Promise<RunResult>((resolve, reject) => {
        const kib = String(Math.ceil((this.settings.memoryBytes ?? DEFAULT_MEMORY_BYTES) / 1024));
        const child = spawn('/bin/sh', ['-c', LIMITED_EXEC, 'sh', kib, command, ...args], { env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
        let stderr = '';
        let timedOut = false;
        let spawnError: string | undefined;
        const kill = () => child.kill('SIGKILL');
        const timer = setTimeout(() => {
          timedOut = true;
          kill();
        }, this.settings.timeoutMs);
        signal.addEventListener('abort', kill, { once: true });
        child.stderr.on('data', (d: Buffer) => {
          if (stderr.length < MAX_STDERR) stderr += d.toString('utf8', 0, MAX_STDERR - stderr.length);
        });
        child.on('error', (err) => {
          spawnError = err.message;
        });
        const reading = (async () => {
          for await (const chunk of child.stdout) {
            if (!(await consume(chunk as Buffer))) {
              kill();
              break;
            }
          }
        })();
        child.on('close', (code) => {
          clearTimeout(timer);
          signal.removeEventListener('abort', kill);
          // sh's own failure to find or run the tool (127, 126: "exec: ...: not found").
          if (!spawnError && (code === 127 || code === 126) && /^sh: .*exec: /.test(stderr))
            spawnError = stderr
              .trim()
              .split('\n')[0]
              .replace(/^sh: \d+: exec: /, '');
          reading.then(
            () => (signal.aborted ? reject(signal.reason) : resolve({ code, timedOut, stderr, ...(spawnError ? { spawnError } : {}) })),
            (err) => reject(signal.aborted ? signal.reason : err),
          );
        });
      });
    } finally {
      release();
    }
  }
}

/**
 * Each listed entry's packed size (-1: not listed). lsar gives XADCompressedSize per member (7z
 * out of a solid block, RAR, whose members are packed one after the other even in a solid
 * archive, sharing only the dictionary); the members of one solid block (7z folder, cab folder:
 * XADFirstSolidIndex names the block's first entry, which has XADNextSolidIndex) share the
 * block's, which lsar puts on one of them: summed over the whole listing, before any cap.
 */
function packedSizes(entries: readonly Record<string, unknown>[]): number[] {
  const block = (e: Record<string, unknown>, i: number): number | null =>
    typeof e.XADFirstSolidIndex === 'number' ? e.XADFirstSolidIndex : typeof e.XADNextSolidIndex === 'number' ? (typeof e.XADIndex === 'number' ? e.XADIndex : i) : null;
  const own = (e: Record<string, unknown>) => (typeof e.XADCompressedSize === 'number' && e.XADCompressedSize >= 0 ? e.XADCompressedSize : -1);
  const blocks = new Map<number, number>();
  for (const [i, e] of entries.entries()) {
    const b = block(e, i);
    if (b === null) continue;
    const sum = blocks.get(b) ?? 0;
    blocks.set(b, sum < 0 || own(e) < 0 ? -1 : sum + own(e));
  }
  return entries.map((e, i) => {
    const b = block(e, i);
    return b === null ? own(e) : (blocks.get(b) as number);
  });
}

/** The first line of a tool's stderr, for a finding's detail (": ..."), or nothing. */
export function stderrNote(stderr: string): string {
  const line = stderr.trim().split('\n')[0]?.slice(0, 200);
  return line ? `: ${line}` : '';
}
