/**
 * The quarantine (docs/quarantine.md): messages with a quarantine verdict, held whole in the
 * folder of main config `quarantine` (folder.ts) and indexed in the shared store (store/) for
 * `postseal quarantine list`. The files are the truth: `get` reads them, the index is a
 * list that the sweep keeps in step (restores missing entries, drops those without files).
 *
 * A held message's id is a hash of what Postfix sends again when it retries (queue id,
 * bank, envelope, client, message bytes; not our session id), so a retry after a lost reply
 * finds the message already held and is answered 250 again, never held twice.
 *
 * Settings: quarantine.dir, maxMessageSizeBytes, maxTotalBytes (a byte counter in the store),
 * minFreeBytes, maxAgeDays (main config).
 * Fails with QUARANTINE_TOO_BIG, QUARANTINE_FULL, QUARANTINE_FAILED (folder.ts); an index write that fails is
 * logged and left to the sweep (the message is safe on disk).
 */
import { createReadStream, promises as fsp, statSync } from 'node:fs';
import { hostname } from 'node:os';
import type { MainConfig } from '../config/main-schema';
import { PostsealError } from '../errors';
import type { Logger } from '../lib/log';
import { matchesRecipient } from '../pipeline/destiny';
import type { NoticeCategory } from '../pipeline/stage';
import type { Store } from '../store/store';
import type { ClientInfo, Envelope } from '../transaction/transaction';
import { retryStableId } from '../transaction/retry-id';
import { checkSpace, ensureFolder, exists, fileOf, isId, isTempFile, listFolder, writeAtomically } from './folder';

export type QuarantineSettings = MainConfig['quarantine'];

/** What the .json file of a held message says. */
export interface HeldRecord {
  readonly version: 1;
  readonly id: string;
  /** ISO time it was held. */
  readonly heldAt: string;
  readonly session: string;
  readonly queueId?: string;
  /** The transaction's bank: its forward target takes a release. */
  readonly bank: string;
  /** The bank whose rules decided (another after a signer-based switch). */
  readonly decidedBy: string;
  /** The finding that decided. */
  readonly reason: string;
  /** The content category of the deciding rule, for the notices a retry still owes (listener/blocked.ts). */
  readonly category?: NoticeCategory;
  /** Every finding, "CODE(detail)". */
  readonly findings: readonly string[];
  /** As Postfix sent it: addresses and ESMTP parameters written as they came (xtext kept). */
  readonly envelope: Envelope;
  readonly client: ClientInfo;
  readonly peer: string;
  readonly size: number;
  /** The host whose folder has the files: hosts that share the store but not a folder each keep their own. */
  readonly host?: string;
  /** From, Subject and Message-ID of the message, printable ASCII, for listing only. */
  readonly from?: string;
  readonly subject?: string;
  readonly messageId?: string;
}

export interface Release {
  readonly at: string;
  readonly to: readonly string[];
  readonly reply: string;
}

export interface HeldEntry extends HeldRecord {
  readonly released: readonly Release[];
}

export interface HoldInput extends Omit<HeldRecord, 'version' | 'id' | 'heldAt' | 'size' | 'host'> {
  /** The message exactly as received, any number of times. */
  readonly raw: () => AsyncIterable<Buffer>;
  readonly size: number;
}

export interface ListFilter {
  readonly since?: Date;
  /** Case-insensitive part of the deciding finding or of any finding. */
  readonly reason?: string;
  /** amavisd lookup style (pipeline/destiny.ts matchesRecipient): user@example.org, example.org, .example.org. */
  readonly rcpt?: string;
}

const KEY = 'quarantine:';
/** Bytes of the held messages, for maxTotalBytes; outside KEY so that list and sweep do not see it. */
const TOTAL_KEY = 'quarantine-bytes';
/** A .eml without its .json this old is the leftover of a crash between the two writes. */
const LEFTOVER_MS = 3600_000;
/** Recipients kept in an index entry (the file has them all): a store value is at most 1 MiB. */
const INDEX_RECIPIENTS = 1000;
const DAY_MS = 86400_000;
/** What to do about a folder that cannot be read, for the command's and the log's messages. */
export const FOLDER_FIX = 'run postseal as the user that owns the quarantine folder, or fix quarantine.dir';

export class Quarantine {
  constructor(
    readonly settings: QuarantineSettings,
    private readonly store: Store,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
    /** This host's name, written in each record: the sweep drops only its own index entries. */
    readonly host: string = hostname(),
  ) {}

  get dir(): string {
    return this.settings.dir;
  }

  /** Holds the message; `duplicate` when this very message (a Postfix retry) was held before. */
  async hold(input: HoldInput): Promise<{ id: string; duplicate: boolean }> {
    const { dir, maxMessageSizeBytes, maxTotalBytes } = this.settings;
    if (maxMessageSizeBytes > 0 && input.size > maxMessageSizeBytes)
      throw new PostsealError('QUARANTINE_TOO_BIG', `message of ${input.size} bytes is larger than quarantine.maxMessageSizeBytes (${maxMessageSizeBytes})`);
    const id = await retryStableId(input);
    const meta = fileOf(dir, id, 'json');
    if (await exists(meta)) {
      // Held already: a record that cannot be read (a root-owned release record of an older
      // sudo release) only stops the index refresh; thrown, it tempfailed every retry of the
      // message until Postfix bounced it.
      const held = await this.get(id).catch((err: Error) => void this.log.warn({ quarantineId: id, reason: err.message }, 'held message not re-indexed'));
      if (held) await this.index(held);
      return { id, duplicate: true };
    }
    await ensureFolder(dir);
    if (maxTotalBytes > 0) {
      // A counter in the store, not a walk of the folder: one read per hold (delete and the sweep subtract).
      const total = Number((await this.store.get(TOTAL_KEY).catch(() => undefined)) ?? 0);
      if (total + input.size > maxTotalBytes)
        throw new PostsealError('QUARANTINE_FULL', `the held messages take ${total} bytes; ${input.size} more would pass quarantine.maxTotalBytes (${maxTotalBytes})`);
    }
    await checkSpace({ dir, minFreeBytes: this.settings.minFreeBytes });
    const { raw, ...rest } = input;
    const record: HeldRecord = { version: 1, id, heldAt: new Date(this.now()).toISOString(), ...rest, host: this.host };
    const eml = fileOf(dir, id, 'eml');
    try {
      const written = await writeAtomically(eml, raw());
      if (written !== input.size) throw new PostsealError('QUARANTINE_FAILED', `quarantine folder ${dir}: wrote ${written} of ${input.size} bytes of ${id}.eml`);
      await writeAtomically(meta, [Buffer.from(`${JSON.stringify(record, null, 1)}\n`)]);
    } catch (err) {
      // Not held without its record: the .eml would take a full disk's space until the sweep's
      // hour had passed. Unless a concurrent hold of the same retry committed it meanwhile.
      if (!(await exists(meta))) await fsp.rm(eml, { force: true }).catch(() => undefined);
      throw err;
    }
    await this.count(input.size);
    await this.index({ ...record, released: [] });
    return { id, duplicate: false };
  }

  /** The held message's record from its file, with its releases; undefined if none has this id. */
  async get(id: string): Promise<HeldEntry | undefined> {
    if (!isId(id)) return undefined;
    const file = fileOf(this.dir, id, 'json');
    // Every message is looked up before its checks run (listener/blocked.ts settleEarlier) and
    // almost none is held: a stat that returns undefined answers that without the thread-pool
    // round trip and the ENOENT error of an open (5-7 % of a signing worker's time, issue 18).
    if (!mayExist(file)) return undefined;
    // Only a missing file means "not held": an unreadable one (EACCES when the command runs as
    // another user, ENOTDIR for a quarantine.dir that is a file) must not read as "no such message".
    const text = await fsp.readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw new PostsealError('QUARANTINE_FAILED', `cannot read ${file} (${err.code ?? err.message}): ${FOLDER_FIX}`, { cause: err });
    });
    if (text === undefined) return undefined;
    const record = JSON.parse(text) as HeldRecord;
    // The same for the releases: one unreadable must not read as "never released" (a second delivery).
    const releasedFile = fileOf(this.dir, id, 'released.json');
    const released = await fsp.readFile(releasedFile, 'utf8').then(
      (t) => JSON.parse(t) as Release[],
      (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return [];
        throw new PostsealError('QUARANTINE_FAILED', `cannot read ${releasedFile} (${err.code ?? err.message}): ${FOLDER_FIX}`, { cause: err });
      },
    );
    return { ...record, released };
  }

  /** The message bytes as received. */
  openRaw(id: string): AsyncIterable<Buffer> {
    return createReadStream(fileOf(this.dir, id, 'eml'));
  }

  /** The index entry of a held message, on whatever host holds it; undefined if none. */
  async indexed(id: string): Promise<HeldEntry | undefined> {
    const value = await this.store.get(KEY + id);
    if (value === undefined) return undefined;
    try {
      return JSON.parse(value) as HeldEntry;
    } catch {
      return undefined;
    }
  }

  /** Held messages from the index, newest first. */
  async list(filter: ListFilter = {}): Promise<HeldEntry[]> {
    const keys = await this.store.scan(KEY, 100000);
    const entries: HeldEntry[] = [];
    for (const key of keys) {
      const value = await this.store.get(key);
      if (value !== undefined) entries.push(JSON.parse(value) as HeldEntry);
    }
    const reason = filter.reason?.toLowerCase();
    return entries
      .filter((e) => !filter.since || Date.parse(e.heldAt) >= filter.since.getTime())
      .filter((e) => !reason || e.reason.toLowerCase().includes(reason) || e.findings.some((f) => f.toLowerCase().includes(reason)))
      .filter((e) => !filter.rcpt || e.envelope.recipients.some((r) => matchesRecipient([filter.rcpt!], r.address)))
      .sort((a, b) => b.heldAt.localeCompare(a.heldAt));
  }

  /** Notes a release in its file and the index. */
  async recordRelease(id: string, release: Release): Promise<void> {
    const held = await this.get(id);
    if (!held) throw new PostsealError('QUARANTINE_NOT_FOUND', `no held message ${id}`);
    const released = [...held.released, release];
    await writeAtomically(fileOf(this.dir, id, 'released.json'), [Buffer.from(`${JSON.stringify(released)}\n`)]);
    await this.index({ ...held, released });
  }

  /**
   * Removes the message (the .json first: without it the message is no longer held); true if
   * this call removed it. Every worker sweeps on the same interval, so two may expire the same
   * message at once: the unlink of the .json is the claim (only one succeeds), and only its
   * winner subtracts the size, or the byte count would drift below what is held.
   */
  async delete(id: string): Promise<boolean> {
    if (!isId(id)) return false;
    // The size from the record alone: an unreadable release record (get() throws) must not
    // keep its bytes counted for ever (the count only grows, and maxTotalBytes refuses mail).
    const record = await fsp.readFile(fileOf(this.dir, id, 'json'), 'utf8').then(
      (t) => JSON.parse(t) as HeldRecord,
      () => undefined,
    );
    let removed = false;
    try {
      await fsp.unlink(fileOf(this.dir, id, 'json'));
      removed = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    // A crashed release's lock goes too, or it would stay for ever (the sweep only knows held ids).
    for (const ext of ['eml', 'released.json', 'releasing'] as const) await fsp.rm(fileOf(this.dir, id, ext), { force: true });
    if (record && removed) await this.count(-record.size);
    await this.store.delete(KEY + id).catch((err) => this.log.warn({ err, quarantineId: id }, 'quarantine index entry not removed; the sweep removes it'));
    return removed;
  }

  /**
   * Removes messages older than maxAgeDays, temp files and leftovers of messages not held
   * (.eml, .released.json, release locks) older than an hour,
   * and index entries without a file; restores index entries of held files missing from the
   * store. Any worker may run it at any time: every step is idempotent.
   */
  async sweep(): Promise<{ expired: number; leftovers: number; restored: number; dropped: number }> {
    const now = this.now();
    const maxAgeMs = this.settings.maxAgeDays * DAY_MS;
    const files = await listFolder(this.dir);
    const held = new Set(files.filter((f) => f.name.endsWith('.json') && !f.name.endsWith('.released.json')).map((f) => f.name.slice(0, -'.json'.length)));
    const counts = { expired: 0, leftovers: 0, restored: 0, dropped: 0 };
    for (const f of files) {
      const old = now - f.mtimeMs;
      if (isTempFile(f.name) || isLeftover(f.name, held)) {
        if (old > LEFTOVER_MS) {
          await fsp.rm(`${this.dir}/${f.name}`, { force: true });
          counts.leftovers++;
        }
        continue;
      }
      if (!f.name.endsWith('.json') || f.name.endsWith('.released.json')) continue;
      const id = f.name.slice(0, -'.json'.length);
      if (old > maxAgeMs) {
        // One line per message: expiry deletes mail nobody released, and the postmaster must be able to
        // say which; written by the worker whose delete removed it (another may sweep it at the same time).
        const entry = await this.get(id).catch(() => undefined);
        if (await this.delete(id)) {
          counts.expired++;
          this.log.info(
            {
              quarantineId: id,
              queueId: entry?.queueId,
              reason: entry?.reason,
              released: Boolean(entry?.released.length),
              heldAt: entry?.heldAt,
              maxAgeDays: this.settings.maxAgeDays,
            },
            entry?.released.length ? 'held message expired (it was released)' : 'held message expired and deleted without being released',
          );
        }
        held.delete(id);
      } else if ((await this.store.get(KEY + id)) === undefined) {
        // One unreadable record must not stop the expiry of the others.
        const entry = await this.get(id).catch((err: Error) => void this.log.warn({ quarantineId: id, reason: err.message }, 'held message not indexed'));
        if (entry) {
          await this.index(entry);
          counts.restored++;
        }
      }
    }
    for (const key of await this.store.scan(KEY, 100000)) {
      const id = key.slice(KEY.length);
      // A message held since the folder was listed has its file now: its entry stays (or list
      // would not show it until the next sweep restored it, an hour later).
      if (held.has(id) || (isId(id) && (await exists(fileOf(this.dir, id, 'json'))))) continue;
      // Another host's message, in its own folder (a store shared by hosts that do not share a
      // folder): that host's sweep keeps its entry; here it only looks like a missing file.
      if (((await this.indexed(id))?.host ?? this.host) !== this.host) continue;
      if (await this.store.delete(key)) counts.dropped++;
    }
    return counts;
  }

  /** The running total of held bytes (quarantine.maxTotalBytes); best effort, logged when the store fails. */
  private async count(bytes: number): Promise<void> {
    if (!this.settings.maxTotalBytes) return;
    await this.store.increment(TOTAL_KEY, bytes).catch((err) => this.log.warn({ err, store: this.store.description }, 'quarantine byte count not updated'));
  }

  /** Best effort: the file is what holds the message, the sweep restores a missing entry. */
  private async index(entry: HeldEntry): Promise<void> {
    const ttlMs = Date.parse(entry.heldAt) + this.settings.maxAgeDays * DAY_MS - this.now();
    if (ttlMs <= 0) return;
    const recipients = entry.envelope.recipients.slice(0, INDEX_RECIPIENTS);
    const value = JSON.stringify({ ...entry, envelope: { ...entry.envelope, recipients } });
    await this.store.set(KEY + entry.id, value, { ttlMs: Math.ceil(ttlMs) }).catch((err) => {
      this.log.warn({ err, quarantineId: entry.id, store: this.store.description }, 'quarantine index entry not written; the message is held, the next sweep indexes it');
    });
  }
}

export { retryStableId };

/**
 * A file of a message that is not held (no ID.json): the .eml of a crash between the two
 * writes, and the .released.json, lock and take-over files a crash in a delete or a release
 * left. Not a .json: that is what holds a message.
 */
function isLeftover(name: string, held: ReadonlySet<string>): boolean {
  const dot = name.indexOf('.');
  if (dot < 0 || (name.endsWith('.json') && !name.endsWith('.released.json'))) return false;
  const id = name.slice(0, dot);
  return isId(id) && !held.has(id);
}

/** False only when the file is certainly absent; any other stat failure is left to the read. */
function mayExist(file: string): boolean {
  try {
    return statSync(file, { throwIfNoEntry: false }) !== undefined;
  } catch {
    return true;
  }
}
