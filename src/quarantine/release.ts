/**
 * Releases a held message: sends it, byte for byte as received, with its original envelope
 * (MAIL FROM with BODY, SMTPUTF8, RET and ENVID, each RCPT with NOTIFY and ORCPT, all as
 * Postfix wrote them) and XFORWARD of the original client, to the forward target of the bank
 * it arrived on. That target is Postfix's reinjection smtpd, which has no content_filter: the
 * message is not filtered again, so the checks that held it are skipped for this release
 * only (docs/quarantine.md; the same holds for signing: a released outbound message is not
 * signed). `to` sends it to that one address instead (no NOTIFY/ORCPT: they were the original
 * recipients').
 *
 * Delivered at most once per recipient: a lock file ID.releasing (O_EXCL, saying "pid host
 * token identity", touched while the release runs; taken over when that process of this kernel
 * is gone, or, from any other, when untouched for RELEASE_LOCK_STALE_MS, by one release only) keeps two releases apart; under it the releases are read again, a
 * released message needs `force`, and `force` sends only to recipients that did not accept
 * it yet. Once the downstream accepted the end of data (on LMTP: per recipient), the
 * accepted recipients are logged and then recorded with the held message; a failure to
 * record is logged, never thrown over the delivery. A refused recipient or a failed DATA is
 * reported, never retried here.
 *
 * Fails: never throws for downstream trouble (REINJECT_* come back as `reply`).
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp, readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import type { ForwardTarget } from '../config/bank-schema';
import type { Logger } from '../lib/log';
import { DownstreamTransaction } from '../reinject/downstream-transaction';
import { DownstreamPool } from '../reinject/pool';
import type { DownstreamReply } from '../reinject/smtp-client';
import type { Recipient } from '../transaction/transaction';
import { fileOf } from './folder';
import type { HeldEntry, Quarantine } from './quarantine';

export interface ReleaseResult {
  /** Every recipient accepted and the message accepted at the end of data. */
  readonly ok: boolean;
  readonly accepted: readonly string[];
  readonly refused: readonly { readonly address: string; readonly reply: string }[];
  /** The downstream's end-of-data reply, or why the release did not get that far. */
  readonly reply: string;
}

const show = (r: DownstreamReply) => `${r.code}${r.enhanced ? ` ${r.enhanced}` : ''} ${r.text}`;
const isOk = (r: DownstreamReply) => r.code >= 200 && r.code < 300;

/** A lock file of another machine, boot or pid namespace (or without an identity) this old is a release that crashed: taken over. */
export const RELEASE_LOCK_STALE_MS = 10 * 60_000;

/**
 * A running release touches its lock this often, so a lock is stale only when no release has
 * touched it for RELEASE_LOCK_STALE_MS: a release of another host to a slow downstream that
 * passed 10 minutes was taken over and sent again.
 */
export const RELEASE_LOCK_REFRESH_MS = RELEASE_LOCK_STALE_MS / 10;

/** A takeover that has not finished in this long crashed: its file is removed. */
const TAKEOVER_STALE_MS = 60_000;

/** The lock file's text (pid, host and a token of this release) and its modification time; null when absent. */
async function readLock(file: string): Promise<{ text: string; mtimeMs: number } | null> {
  try {
    const st = await fsp.stat(file);
    return { text: (await fsp.readFile(file, 'utf8')).trim(), mtimeMs: st.mtimeMs };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/**
 * Takes the lock file for `me` ("pid host token identity"): null once held, else why not
 * (another release holds it). A stale lock is replaced by a rename over it (the path is never empty,
 * so no O_EXCL create can slip in), under a second lock file ID.releasing.takeover (O_EXCL)
 * so that only one release replaces it: a stat-then-rm take-over let two releases through.
 */
async function lock(file: string, me: string, now: number): Promise<string | null> {
  // Written whole under a name of our own, then linked (fails if the lock exists): no other
  // release ever reads an empty or half-written lock, whose cut identity would look crashed.
  const temp = `${file}.new-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    // Inside the try: on a full disk the file is created and its write fails, and it must go too.
    await fsp.writeFile(temp, `${me}\n`, { mode: 0o600, flag: 'wx' });
    return await lockWith(file, temp, now);
  } finally {
    await fsp.rm(temp, { force: true });
  }
}

async function lockWith(file: string, temp: string, now: number): Promise<string | null> {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await fsp.link(temp, file);
      return null;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const seen = await readLock(file);
    if (!seen) continue; // released meanwhile
    const busy = holder(seen.text, now - seen.mtimeMs);
    if (busy) return busy;
    const takeover = `${file}.takeover`;
    let t: fsp.FileHandle;
    try {
      t = await fsp.open(takeover, 'wx', 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const st = await fsp.stat(takeover).catch(() => null);
      if (st && now - st.mtimeMs > TAKEOVER_STALE_MS) await fsp.rm(takeover, { force: true });
      return 'another release is taking over its stale lock';
    }
    try {
      // Under the takeover lock: still the lock judged stale? Then replace it in one rename.
      const again = await readLock(file);
      if (!again) continue;
      if (again.text !== seen.text || again.mtimeMs !== seen.mtimeMs) return holder(again.text, now - again.mtimeMs) ?? 'another release took over its stale lock';
      await fsp.rename(temp, file);
      return null;
    } finally {
      await t.close();
      await fsp.rm(takeover, { force: true });
    }
  }
  return 'its lock file keeps changing';
}

/** Touches the lock file while it is still this release's (a failure only makes it look older). */
async function refreshLock(file: string, me: string): Promise<void> {
  const held = await readLock(file).catch(() => null);
  if (held?.text === me) await fsp.utimes(file, new Date(), new Date()).catch(() => undefined);
}

/** Removes the lock file if it is still this release's (a release that outlived its lock must not remove the next one's). */
async function unlock(file: string, me: string): Promise<void> {
  const held = await readLock(file).catch(() => null);
  if (held?.text === me) await fsp.rm(file, { force: true });
}

/**
 * Which process this is, in a form no other process can share: the kernel's boot id, its pid
 * namespace and the process's start time. The host name and pid alone are not: after a reboot,
 * or in a container (where the daemon is pid 1 at every start), the pid of a crashed release
 * belongs to another live process; and two hosts (or containers) with one host name share a
 * folder. "" where /proc does not tell (then the lock is judged by its age).
 */
export function processIdentity(pid: number): string {
  try {
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const ns = readlinkSync('/proc/self/ns/pid').replace(/\D/g, '');
    return `${boot}/${ns}/${startTime(pid)}`;
  } catch {
    return '';
  }
}

/** Field 22 of /proc/PID/stat (clock ticks after boot); throws when the process is gone. */
function startTime(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  if (!start) throw new Error(`/proc/${pid}/stat has no start time`);
  return start;
}

/**
 * Who holds a lock file that says "pid host token identity": a process of this kernel and pid
 * namespace (same boot id and namespace in its identity) holds it while a process with that pid
 * and start time runs, however long its release takes (a slow downstream); once none does, it
 * crashed, and its lock is taken over at once. Any other lock (another machine, even one of the
 * same host name; this one before a reboot; no identity) is judged by its age.
 */
function holder(text: string, ageMs: number): string | null {
  const [pid, host, , identity] = text.split(/\s+/);
  const here = processIdentity(process.pid);
  const scope = (id: string) => id.slice(0, id.lastIndexOf('/'));
  if (identity && here && pid && /^\d+$/.test(pid) && scope(identity) === scope(here)) {
    const runs = `process ${pid} on ${host ?? 'this host'} holds its lock; if no such release runs, remove the lock file`;
    try {
      // Another process that got the pid since (a reboot is another boot id) started later.
      return `${scope(identity)}/${startTime(Number(pid))}` === identity ? runs : null;
    } catch (err) {
      // Gone: it crashed. A /proc that hides other users' processes (EACCES) says nothing: it may run.
      return (err as NodeJS.ErrnoException).code === 'EACCES' ? runs : null;
    }
  }
  if (ageMs >= RELEASE_LOCK_STALE_MS) return null;
  return `${pid ? `process ${pid}${host ? ` on ${host}` : ''}` : 'a release'} holds its lock, taken over ${RELEASE_LOCK_STALE_MS / 60_000} minutes after its release last touched it`;
}

export async function releaseHeld(
  quarantine: Quarantine,
  entry: HeldEntry,
  target: ForwardTarget,
  opts: { heloName: string; log: Logger; to?: string; force?: boolean; now?: () => Date; lockRefreshMs?: number },
): Promise<ReleaseResult> {
  const fail = (reply: string, accepted: string[] = [], refused: ReleaseResult['refused'] = []): ReleaseResult => ({ ok: false, accepted, refused, reply });
  const lockFile = fileOf(quarantine.dir, entry.id, 'releasing');
  const me = `${process.pid} ${hostname()} ${randomBytes(6).toString('hex')} ${processIdentity(process.pid)}`.trim();
  let busy: string | null;
  try {
    busy = await lock(lockFile, me, Date.now());
  } catch (err) {
    // A full disk (ENOSPC) or a folder postseal cannot write: nothing was sent.
    const errno = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    return fail(`cannot write the release lock ${lockFile} (${errno}); nothing was sent`);
  }
  if (busy) return fail(`another release of ${entry.id} is running (${busy}: ${lockFile})`);
  const refresh = setInterval(() => void refreshLock(lockFile, me), opts.lockRefreshMs ?? RELEASE_LOCK_REFRESH_MS);
  refresh.unref();
  try {
    // Read again under the lock: a concurrent release may have finished meanwhile.
    const held = (await quarantine.get(entry.id)) ?? entry;
    const done = new Set(held.released.flatMap((r) => r.to.map((a) => a.toLowerCase())));
    if (done.size && !opts.force) return fail(`already released at ${held.released.map((r) => r.at).join(', ')}; --force sends it again`);
    const { recipients, ...mail } = held.envelope;
    const wanted: readonly Recipient[] = opts.to === undefined ? recipients : [{ address: opts.to }];
    // --force sends only to those that did not take it yet: nobody gets it twice.
    const rcpts = wanted.filter((r) => !done.has(r.address.toLowerCase()));
    if (!rcpts.length) return fail(`every recipient already accepted it (${[...done].join(', ')})`);
    return await deliverHeld(quarantine, held, target, rcpts, mail, opts);
  } finally {
    clearInterval(refresh);
    await unlock(lockFile, me);
  }
}

async function deliverHeld(
  quarantine: Quarantine,
  held: HeldEntry,
  target: ForwardTarget,
  rcpts: readonly Recipient[],
  mail: Omit<HeldEntry['envelope'], 'recipients'>,
  opts: { heloName: string; log: Logger; now?: () => Date },
): Promise<ReleaseResult> {
  const pool = new DownstreamPool(target, opts.heloName, opts.log);
  const fail = (reply: string, accepted: string[] = [], refused: ReleaseResult['refused'] = []): ReleaseResult => ({ ok: false, accepted, refused, reply });
  try {
    let tx: DownstreamTransaction | null;
    try {
      const begun = await DownstreamTransaction.begin(pool, mail, held.client);
      if (!begun.tx) return fail(`MAIL FROM: ${show(begun.reply)}`);
      tx = begun.tx;
    } catch (err) {
      return fail((err as Error).message);
    }
    const accepted: string[] = [];
    const refused: { address: string; reply: string }[] = [];
    let delivered: string[];
    let reply: string;
    try {
      for (const r of rcpts) {
        const answer = await tx.rcpt(r);
        if (isOk(answer)) accepted.push(r.address);
        else refused.push({ address: r.address, reply: show(answer) });
      }
      if (!accepted.length) {
        tx.abort();
        return fail('no recipient accepted', [], refused);
      }
      const done = await tx.data(quarantine.openRaw(held.id));
      if (target.protocol === 'lmtp' && done.replies.length > 1) {
        // LMTP: one reply per accepted recipient; those with a 2xx have the message, whatever the others got.
        delivered = accepted.filter((_, i) => done.replies[i] && isOk(done.replies[i]));
        accepted.forEach((a, i) => {
          if (!delivered.includes(a)) refused.push({ address: a, reply: done.replies[i] ? show(done.replies[i]) : (done.failure?.message ?? 'no reply') });
        });
        reply = show(done.replies.find(isOk) ?? done.replies[0]);
      } else {
        const bad = done.replies.find((r) => !isOk(r));
        delivered = done.failure || bad || done.replies.length === 0 ? [] : accepted;
        reply = done.failure?.message ?? (bad ? `DATA: ${show(bad)}` : done.replies.length ? show(done.replies[0]) : 'DATA: no reply');
      }
      if (!delivered.length) return fail(reply, [], refused);
    } catch (err) {
      // A connection error or timeout (REINJECT_*), or the .eml unreadable: nothing was accepted.
      tx.cancel();
      return fail((err as Error).message, [], refused);
    }
    // Delivered: logged first, then recorded; a failure to record is logged and does not hide the delivery.
    const at = (opts.now?.() ?? new Date()).toISOString();
    opts.log.info({ quarantineId: held.id, queueId: held.queueId, accepted: delivered, reply }, 'quarantined message accepted by the forward target');
    try {
      await quarantine.recordRelease(held.id, { at, to: delivered, reply });
    } catch (err) {
      opts.log.error(
        { quarantineId: held.id, queueId: held.queueId, accepted: delivered, err },
        `released message delivered but the release could not be recorded (${(err as Error).message}); do not release ${held.id} again without checking the log`,
      );
    }
    return { ok: refused.length === 0, accepted: delivered, refused, reply };
  } finally {
    await pool.close();
  }
}
