/**
 * `postseal quarantine list|show|release|delete` (docs/quarantine.md): the held messages of the
 * configured quarantine (main config `quarantine`, its index in the `store`).
 *
 * - `list [--since WHEN] [--reason TEXT] [--rcpt ADDRESS]`: newest first, from the index.
 * - `show ID [--raw]`: the record (envelope with its parameters, client, findings, releases),
 *   or the message bytes as received.
 * - `release ID [--to ADDRESS] [--force]`: reinjected to the forward target of the bank it
 *   came in on (quarantine/release.ts: not filtered again), logged with its id as one JSON
 *   line on standard error; a second release needs --force.
 * - `delete ID`: removes it.
 *
 * `--json` prints one JSON document on standard output for scripts. Exit codes: 0 done, 1 no
 * such message, 2 usage error, 3 failure (configuration, store, downstream refused).
 */
import { constants as fsConstants, promises as fsp } from 'node:fs';
import pino from 'pino';
import { isPostsealError } from '../errors';
import { createLogger } from '../lib/log';
import { FOLDER_FIX, Quarantine, type HeldEntry } from '../quarantine/quarantine';
import { isId } from '../quarantine/folder';
import { releaseHeld } from '../quarantine/release';
import { openStore, type Store } from '../store';
import { UsageError, loadOrExplain, parse, withUsage } from './args';

const help = `Usage: postseal quarantine list [--since WHEN] [--reason TEXT] [--rcpt ADDRESS] [--json] [--config FILE]
       postseal quarantine show ID [--json | --raw] [--config FILE]
       postseal quarantine release ID [--to ADDRESS] [--force] [--json] [--config FILE]
       postseal quarantine delete ID [--json] [--config FILE]

list     held messages, newest first
  --since WHEN     held at or after WHEN: 2026-12-07, 2026-12-07T10:00:00Z, or an age: 30m, 12h, 7d
  --reason TEXT    the deciding finding or any finding contains TEXT (DMARC, VIRUS, ...)
  --rcpt ADDRESS   a recipient matches: user@example.org, example.org, .example.org
show     one held message; --raw writes the message as received
release  send it on to the forward target of its bank (not filtered again), with its original
         envelope; --to sends it to ADDRESS instead; --force sends it again, only to recipients that did not accept it yet
delete   remove it
--json   one JSON document on standard output
Exit codes: 0 done, 1 no such message, 2 usage error, 3 failure`;

export const EXIT = { ok: 0, notFound: 1, usage: 2, failure: 3 } as const;

const AGE = /^(\d+)([mhd])$/;
const UNIT_MS = { m: 60_000, h: 3600_000, d: 86400_000 } as const;

/** An ISO date or time, or an age before now. */
export function parseSince(text: string, now = Date.now()): Date {
  const age = AGE.exec(text);
  if (age) return new Date(now - Number(age[1]) * UNIT_MS[age[2] as keyof typeof UNIT_MS]);
  const t = /^\d{4}-\d{2}-\d{2}/.test(text) ? Date.parse(text) : Number.NaN;
  if (Number.isNaN(t)) throw new UsageError(`--since wants a date (2026-12-07), a time (2026-12-07T10:00:00Z) or an age (30m, 12h, 7d), not ${JSON.stringify(text)}\n\n${help}`);
  return new Date(t);
}

type Values = { since?: string; reason?: string; rcpt?: string; json?: boolean; raw?: boolean; to?: string; force?: boolean; config?: string };

export function runQuarantine(args: string[]): Promise<number> {
  return withUsage(async () => {
    const {
      values,
      positionals,
      help: h,
    } = parse(
      args,
      {
        config: { type: 'string', short: 'c' },
        since: { type: 'string' },
        reason: { type: 'string' },
        rcpt: { type: 'string' },
        json: { type: 'boolean', default: false },
        raw: { type: 'boolean', default: false },
        to: { type: 'string' },
        force: { type: 'boolean', default: false },
      },
      help,
    );
    if (h) {
      process.stdout.write(`${h}\n`);
      return EXIT.ok;
    }
    const [sub, ...rest] = positionals;
    checkUsage(sub, rest, values);
    const since = values.since === undefined ? undefined : parseSince(values.since);
    const config = loadOrExplain(values.config);
    if (!config) return EXIT.failure;
    // Audit lines (a release) and index warnings go to standard error, as JSON like the daemon's log.
    const log = createLogger('info', pino.destination({ dest: 2, sync: true })).child({ command: `quarantine ${sub}` });
    let store: Store;
    try {
      store = await openStore(config.main.store, config.file, createLogger('silent'));
    } catch (err) {
      if (!isPostsealError(err)) throw err;
      process.stderr.write(`postseal: ${err.code}: ${err.message}\n`);
      return EXIT.failure;
    }
    const keepAlive = setInterval(() => undefined, 1 << 30);
    try {
      const q = new Quarantine(config.main.quarantine, store, log);
      const problem = await folderProblem(q.dir, config.file, sub !== 'list' && sub !== 'show');
      // list reads the index in the store, which a host without the folder may share: a warning.
      if (problem && sub === 'list') process.stderr.write(`postseal: warning: ${problem}; listing the index in the store\n`);
      else if (problem) return failure(values, rest[0], problem);
      if (sub === 'list') return await list(q, { since, reason: values.reason, rcpt: values.rcpt }, values.json === true);
      const held = await q.get(rest[0]);
      if (!held) {
        // Hosts may share the store (the index) but not a folder: say where the message is.
        const elsewhere = (await q.indexed(rest[0]).catch(() => undefined))?.host;
        if (elsewhere && elsewhere !== q.host) {
          if (values.json) print({ id: rest[0], error: 'held on another host', host: elsewhere });
          else process.stderr.write(`postseal: ${rest[0]} is held on ${printable(elsewhere)}, in that host's quarantine folder; run the command there\n`);
        } else if (values.json) print({ id: rest[0], error: 'not found' });
        else process.stderr.write(`postseal: no held message ${rest[0]} in ${q.dir}\n`);
        return EXIT.notFound;
      }
      if (sub === 'show') return await show(q, held, values);
      if (sub === 'delete') {
        await q.delete(held.id);
        log.info({ quarantineId: held.id, queueId: held.queueId }, 'quarantined message deleted');
        if (values.json) print({ id: held.id, deleted: true });
        else process.stdout.write(`deleted ${held.id}\n`);
        return EXIT.ok;
      }
      const target = config.banks.get(held.bank)?.forward;
      if (!target) return failure(values, held.id, `its bank ${held.bank} no longer exists; release it with a configuration that has that bank`);
      const r = await releaseHeld(q, held, target, { heloName: target.heloName || config.hostname, log, to: values.to, force: values.force });
      if (!r.accepted.length && !r.refused.length && /^(already released|another release|every recipient)/.test(r.reply)) return failure(values, held.id, r.reply);
      log[r.ok ? 'info' : 'warn'](
        { quarantineId: held.id, queueId: held.queueId, session: held.session, accepted: r.accepted, refused: r.refused, reply: r.reply, forward: `${target.host}:${target.port}` },
        r.ok ? 'quarantined message released' : 'quarantined message not (fully) released',
      );
      if (values.json) print({ id: held.id, ...r });
      else {
        if (r.accepted.length) process.stdout.write(`released ${held.id} to ${r.accepted.join(', ')}: ${r.reply}\n`);
        for (const x of r.refused) process.stdout.write(`refused ${x.address}: ${x.reply}\n`);
        if (!r.accepted.length) process.stdout.write(`not released ${held.id}: ${r.reply}\n`);
      }
      return r.ok ? EXIT.ok : EXIT.failure;
    } catch (err) {
      // A file gone under us (ENOENT), the store failing: exit 3 with what happened, for scripts.
      process.stderr.write(`postseal: ${isPostsealError(err) ? `${err.code}: ` : ''}${(err as Error).message}\n`);
      return EXIT.failure;
    } finally {
      clearInterval(keepAlive);
      await store.close();
    }
  });
}

function checkUsage(sub: string | undefined, rest: string[], v: Values): void {
  if (sub !== 'list' && sub !== 'show' && sub !== 'release' && sub !== 'delete') throw new UsageError(`expected list, show, release or delete\n\n${help}`);
  if (sub === 'list' && rest.length) throw new UsageError(`list takes no arguments\n\n${help}`);
  if (sub !== 'list' && (rest.length !== 1 || !isId(rest[0]))) throw new UsageError(`${sub} needs one quarantine ID (as list prints it)\n\n${help}`);
  const only = (flag: keyof Values, subs: string[]) => {
    if (v[flag] !== undefined && v[flag] !== false && !subs.includes(sub)) throw new UsageError(`--${flag} goes with ${subs.join(' or ')}\n\n${help}`);
  };
  only('since', ['list']);
  only('reason', ['list']);
  only('rcpt', ['list']);
  only('raw', ['show']);
  only('to', ['release']);
  only('force', ['release']);
  if (v.raw && v.json) throw new UsageError(`--raw and --json exclude each other\n\n${help}`);
  if (v.to !== undefined && !/^[^\s<>]+@[^\s<>@]+$/.test(v.to)) throw new UsageError(`--to wants one address, user@example.org\n\n${help}`);
}

/**
 * Envelope addresses, HELO names and findings come from the sender: control characters
 * (C0, DEL, C1 such as CSI) are replaced so that a held message cannot drive the terminal
 * of the postmaster who lists it (escape-sequence injection).
 */
export function printable(text: string): string {
  return text.replace(/[\x00-\x1f\x7f-\x9f]/g, '?');
}

function print(value: unknown): void {
  // JSON escapes C0 controls itself; C1 controls (a terminal's CSI) are escaped here.
  process.stdout.write(`${JSON.stringify(value, null, 2).replace(/[\x7f-\x9f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}\n`);
}

function failure(v: Values, id: string, why: string): number {
  if (v.json) print({ id, ok: false, error: why });
  else process.stderr.write(`postseal: ${id}: ${why}\n`);
  return EXIT.failure;
}

/**
 * Why the quarantine folder cannot serve this command, naming the folder, the setting and the
 * fix; undefined when it can. Without this a missing or unreadable folder (a typo in
 * quarantine.dir, the command run as another user) read as "no held message".
 */
async function folderProblem(dir: string, configFile: string, write: boolean): Promise<string | undefined> {
  const where = `the quarantine folder ${dir} (quarantine.dir in ${configFile})`;
  try {
    const st = await fsp.stat(dir);
    if (!st.isDirectory()) return `${where} is not a folder: point quarantine.dir at the folder the daemon holds messages in`;
    await fsp.access(dir, fsConstants.R_OK | fsConstants.X_OK | (write ? fsConstants.W_OK : 0));
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return `${where} does not exist: point quarantine.dir at the folder the daemon holds messages in (postseal creates it, mode 0700, when it starts)`;
    if (code === 'ENOTDIR') return `${where} is not a folder (a file is in its path): point quarantine.dir at the folder the daemon holds messages in`;
    return `cannot ${write ? 'write' : 'read'} ${where} (${code ?? (err as Error).message}): ${FOLDER_FIX}`;
  }
}

async function list(q: Quarantine, filter: Parameters<Quarantine['list']>[0], json: boolean): Promise<number> {
  const entries = await q.list(filter);
  if (json) {
    print(entries);
    return EXIT.ok;
  }
  for (const e of entries) {
    const rcpts = e.envelope.recipients.map((r) => r.address);
    const released = e.released.length ? ' released' : '';
    const line = printable(
      `${e.id} ${e.heldAt} ${e.reason} <${e.envelope.mailFrom}> -> ${rcpts.slice(0, 3).join(',')}${rcpts.length > 3 ? ` (+${rcpts.length - 3})` : ''} ${e.size}B${released} ${e.subject ?? ''}`,
    );
    process.stdout.write(`${line}\n`);
  }
  if (!entries.length) process.stdout.write('no held messages\n');
  return EXIT.ok;
}

async function show(q: Quarantine, held: HeldEntry, v: Values): Promise<number> {
  if (v.raw) {
    for await (const chunk of q.openRaw(held.id)) process.stdout.write(chunk);
    return EXIT.ok;
  }
  if (v.json) {
    print(held);
    return EXIT.ok;
  }
  const env = held.envelope;
  const params = [env.body && `BODY=${env.body}`, env.smtputf8 && 'SMTPUTF8', env.ret && `RET=${env.ret}`, env.envid !== undefined && `ENVID=${env.envid}`]
    .filter(Boolean)
    .join(' ');
  const lines = [
    `id:         ${held.id}`,
    `held at:    ${held.heldAt}`,
    `queue id:   ${held.queueId ?? '-'}  session: ${held.session}`,
    `bank:       ${held.bank}${held.decidedBy !== held.bank ? ` (decided by ${held.decidedBy})` : ''}`,
    `reason:     ${held.reason}`,
    `findings:   ${held.findings.join(' ')}`,
    `client:     ${held.client.name ?? '-'} [${held.client.addr ?? held.peer}] helo=${held.client.helo ?? '-'}`,
    `mail from:  <${env.mailFrom}>${params ? ` ${params}` : ''}`,
    ...env.recipients.map((r) => `rcpt to:    <${r.address}>${r.notify !== undefined ? ` NOTIFY=${r.notify}` : ''}${r.orcpt !== undefined ? ` ORCPT=${r.orcpt}` : ''}`),
    `size:       ${held.size}`,
    `from:       ${held.from ?? '-'}`,
    `subject:    ${held.subject ?? '-'}`,
    `message-id: ${held.messageId ?? '-'}`,
    ...held.released.map((r) => `released:   ${r.at} to ${r.to.join(', ')}: ${r.reply}`),
  ];
  process.stdout.write(`${lines.map(printable).join('\n')}\n`);
  return EXIT.ok;
}
