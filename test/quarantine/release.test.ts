/**
 * A release to an LMTP forward target that accepts the message for one recipient and refuses
 * it for the other at the end of data: the accepted one is recorded as released, and
 * `force` then sends only to the other, so nobody gets the message twice; and a release
 * carries the bytes held and the whole envelope.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLogger } from '../../src/lib/log';
import { Quarantine } from '../../src/quarantine/quarantine';
import { processIdentity, releaseHeld } from '../../src/quarantine/release';
import { openSqliteStore } from '../../src/store/sqlite';
import { loadTestBank } from '../helpers/banks';
import { startSink, type Sink } from '../helpers/sink';
import type { Store } from '../../src/store/store';
import type { ForwardTarget } from '../../src/config/bank-schema';
import type { Envelope } from '../../src/transaction/transaction';
import { heldInput } from '../helpers/quarantine';

const raw = Buffer.from('From: <a@remote.test>\r\nSubject: held\r\n\r\nbody\r\n');

it('records per recipient what an LMTP target accepted, and force sends only to the rest', async () => {
  const sink = await startSink({ lmtp: true });
  const dir = mkdtempSync(path.join(tmpdir(), 'q-release-'));
  const store = openSqliteStore({ file: path.join(dir, 's.db'), keyPrefix: 'ps:', busyTimeoutMs: 1000 });
  const log = createLogger('silent');
  try {
    const q = new Quarantine({ dir: path.join(dir, 'held'), maxMessageSizeBytes: 0, maxTotalBytes: 0, minFreeBytes: 0, maxAgeDays: 30, sweepIntervalMs: 60000 }, store, log);
    const { id } = await q.hold({
      session: 's1',
      queueId: '4LMTP',
      bank: 'default',
      decidedBy: 'default',
      reason: 'VIRUS_FOUND',
      findings: ['VIRUS_FOUND'],
      envelope: { mailFrom: 'a@remote.test', smtputf8: false, recipients: [{ address: 'ok@example.test' }, { address: 'full@example.test' }] },
      client: { addr: '198.51.100.7' },
      peer: '127.0.0.1',
      size: raw.length,
      raw: async function* () {
        yield raw;
      },
    });
    const target = { ...loadTestBank({ forward: { host: '127.0.0.1', port: sink.port } }).forward, protocol: 'lmtp' as const };
    sink.behaviour = { lmtpRcptReply: { 'full@example.test': [452, '4.2.2 mailbox full'] } };
    const first = await releaseHeld(q, (await q.get(id))!, target, { heloName: 'filter.test', log });
    expect(first).toMatchObject({ ok: false, accepted: ['ok@example.test'], refused: [{ address: 'full@example.test', reply: expect.stringContaining('452') }] });
    expect((await q.get(id))!.released.map((r) => r.to)).toEqual([['ok@example.test']]);
    sink.behaviour = {};
    const before = sink.received.length;
    const again = await releaseHeld(q, (await q.get(id))!, target, { heloName: 'filter.test', log, force: true });
    expect(again).toMatchObject({ ok: true, accepted: ['full@example.test'] });
    expect(sink.received.slice(before).map((m) => m.recipients.map((r) => r.address))).toEqual([['full@example.test']]);
  } finally {
    await store.close();
    await sink.close();
  }
});

it('releases exactly the bytes held (NUL, 8-bit, a bare CR, a leading dot, a 1 MiB header field; a bare LF goes as CRLF, as SMTP wants) with the SMTPUTF8 envelope and its DSN parameters', async () => {
  const sink = await startSink();
  const dir = mkdtempSync(path.join(tmpdir(), 'q-release-'));
  const store = openSqliteStore({ file: path.join(dir, 's.db'), keyPrefix: 'ps:', busyTimeoutMs: 1000 });
  const log = createLogger('silent');
  const bytes = Buffer.concat([
    Buffer.from(`X-Big: ${'a'.repeat(1 << 20)}\r\n`),
    Buffer.from('From: <j\u00f6rg@b\u00fccher.test>\r\nSubject: caf\u00e9\r\n\r\nNUL \0 here\nbare LF and a bare \r CR\r\n.leading dot\r\n..two\r\n\xff\xfe\r\n', 'utf8'),
  ]);
  try {
    const q = new Quarantine({ dir: path.join(dir, 'held'), maxMessageSizeBytes: 0, maxTotalBytes: 0, minFreeBytes: 0, maxAgeDays: 30, sweepIntervalMs: 60000 }, store, log);
    const envelope: Envelope = {
      mailFrom: 'j\u00f6rg@b\u00fccher.test',
      body: '8BITMIME',
      smtputf8: true,
      ret: 'FULL',
      envid: 'q+2Bid',
      recipients: [{ address: 'b\u00f8b@example.test', notify: 'FAILURE,DELAY', orcpt: 'utf-8;b\\x{F8}b@example.test' }, { address: 'carol@example.test' }],
    };
    const { id } = await q.hold({
      session: 's1',
      queueId: '4BYTES',
      bank: 'default',
      decidedBy: 'default',
      reason: 'VIRUS_FOUND',
      findings: ['VIRUS_FOUND'],
      envelope,
      client: { addr: '198.51.100.7', name: 'mx.remote.test', helo: 'mx.remote.test', ident: '4BYTES' },
      peer: '127.0.0.1',
      size: bytes.length,
      raw: async function* () {
        yield bytes.subarray(0, 1000);
        yield bytes.subarray(1000);
      },
    });
    const target = loadTestBank({ forward: { host: '127.0.0.1', port: sink.port } }).forward;
    const r = await releaseHeld(q, (await q.get(id))!, target, { heloName: 'filter.test', log });
    expect(r).toMatchObject({ ok: true, accepted: ['b\u00f8b@example.test', 'carol@example.test'] });
    const got = sink.received.at(-1)!;
    // The one change: a bare LF ends an SMTP line as CRLF (reinject/smtp-client.ts; Postfix's smtp client never sends one).
    expect(got.data.toString('latin1')).toBe(bytes.toString('latin1').replace('here\nbare', 'here\r\nbare'));
    expect(got.mailFrom).toBe(envelope.mailFrom);
    // smtp-server decodes the xtext of ENVID (sent as q+2Bid).
    expect(got.mailArgs).toMatchObject({ BODY: '8BITMIME', SMTPUTF8: true, RET: 'FULL', ENVID: 'q+id' });
    expect(got.recipients).toEqual([
      { address: 'b\u00f8b@example.test', args: { NOTIFY: 'FAILURE,DELAY', ORCPT: 'utf-8;b\\x{F8}b@example.test' } },
      { address: 'carol@example.test', args: {} },
    ]);
    expect(got.xforward).toMatchObject({ ADDR: '198.51.100.7', NAME: 'mx.remote.test', IDENT: '4BYTES' });
  } finally {
    await store.close();
    await sink.close();
  }
});

describe('the release lock', () => {
  let sink: Sink;
  let dir: string;
  let store: Store;
  let q: Quarantine;
  let id: string;
  let target: ForwardTarget;
  const log = createLogger('silent');
  beforeEach(async () => {
    sink = await startSink();
    dir = mkdtempSync(path.join(tmpdir(), 'q-lock-'));
    store = openSqliteStore({ file: path.join(dir, 's.db'), keyPrefix: 'ps:', busyTimeoutMs: 1000 });
    q = new Quarantine({ dir: path.join(dir, 'held'), maxMessageSizeBytes: 0, maxTotalBytes: 0, minFreeBytes: 0, maxAgeDays: 30, sweepIntervalMs: 60000 }, store, log);
    ({ id } = await q.hold(heldInput(raw, { session: 's1', queueId: '4LOCK' })));
    target = loadTestBank({ forward: { host: '127.0.0.1', port: sink.port } }).forward;
  });
  afterEach(async () => {
    await store.close();
    await sink.close();
  });
  const lockFile = () => path.join(dir, 'held', `${id}.releasing`);
  /** This kernel's boot id and pid namespace, as a lock of this host says them. */
  const thisKernel = () => processIdentity(process.pid).split('/').slice(0, 2).join('/');
  const ageLock = (ms: number) => utimesSync(lockFile(), new Date(Date.now() - ms), new Date(Date.now() - ms));

  it('is not taken over from a release still running on this host, however long it takes (a slow downstream)', async () => {
    writeFileSync(lockFile(), `${process.pid} ${hostname()} token ${processIdentity(process.pid)}\n`);
    ageLock(3600_000);
    const r = await releaseHeld(q, (await q.get(id))!, target, { heloName: 'filter.test', log });
    expect(r).toMatchObject({ ok: false, accepted: [] });
    expect(r.reply).toMatch(new RegExp(`^another release of ${id} is running \\(process ${process.pid} on ${hostname()}`));
    expect(sink.received).toHaveLength(0);
  });

  it('is taken over at once from a release whose process is gone (it crashed)', async () => {
    const dead = Number(execFileSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']));
    writeFileSync(lockFile(), `${dead} ${hostname()} token ${thisKernel()}/12345\n`);
    const r = await releaseHeld(q, (await q.get(id))!, target, { heloName: 'filter.test', log });
    expect(r).toMatchObject({ ok: true, accepted: ['bob@example.test'] });
    expect(sink.received).toHaveLength(1);
  });

  // Another machine with this host name sharing the folder: its pid means nothing here.
  it('is not taken over at once from a release of another machine of the same host name (another boot id), though its pid runs nowhere here', async () => {
    const dead = Number(execFileSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']));
    writeFileSync(lockFile(), `${dead} ${hostname()} token 00000000-0000-4000-8000-000000000000/${thisKernel().split('/')[1]}/12345\n`);
    const r = await releaseHeld(q, (await q.get(id))!, target, { heloName: 'filter.test', log });
    expect(r.reply).toMatch(/holds its lock, taken over 10 minutes after its release last touched it/);
    expect(sink.received).toHaveLength(0);
  });

  // pid 1 runs everywhere (in a container it is the daemon at every start): a lock of a crashed
  // release that had that pid, before a restart or a reboot, was held for ever.
  it('is taken over at once from a crashed release whose pid another process has now', async () => {
    writeFileSync(lockFile(), `1 ${hostname()} token ${thisKernel()}/99999999999\n`);
    const r = await releaseHeld(q, (await q.get(id))!, target, { heloName: 'filter.test', log });
    expect(r).toMatchObject({ ok: true, accepted: ['bob@example.test'] });
    expect(sink.received).toHaveLength(1);
  });

  it('is taken over after 10 minutes from a release before a reboot (another boot id), whatever runs with its pid now', async () => {
    writeFileSync(lockFile(), `1 ${hostname()} token 00000000-0000-4000-8000-000000000000/${thisKernel().split('/')[1]}/5\n`);
    ageLock(11 * 60_000);
    const r = await releaseHeld(q, (await q.get(id))!, target, { heloName: 'filter.test', log });
    expect(r).toMatchObject({ ok: true, accepted: ['bob@example.test'] });
    expect(sink.received).toHaveLength(1);
  });

  // Its host judges the lock of another by its age: a release to a slow downstream must keep it young.
  it('keeps its lock young while the downstream is slow, so another host does not take it over', async () => {
    sink.behaviour = { stall: 'rcpt' };
    const running = releaseHeld(q, (await q.get(id))!, target, { heloName: 'filter.test', log, lockRefreshMs: 20 });
    const mtime = () => statSync(lockFile(), { throwIfNoEntry: false })?.mtimeMs;
    while (mtime() === undefined) await new Promise((r) => setTimeout(r, 5));
    ageLock(3600_000);
    const aged = mtime()!;
    while (mtime() === aged) await new Promise((r) => setTimeout(r, 5));
    expect(mtime()!).toBeGreaterThan(aged);
    await sink.close();
    expect(await running).toMatchObject({ ok: false });
  });

  it('lets one of many releases that find the same stale lock at once deliver, and only one', async () => {
    // Ten rounds: the old take-over (stat, rm, create) let two through in about a third of them.
    for (let round = 1; round <= 10; round++) {
      writeFileSync(lockFile(), '1\n');
      ageLock(3600_000);
      rmSync(path.join(dir, 'held', `${id}.released.json`), { force: true });
      const held = (await q.get(id))!;
      const results = await Promise.all(Array.from({ length: 16 }, () => releaseHeld(q, held, target, { heloName: 'filter.test', log })));
      expect({ round, ok: results.filter((r) => r.ok).length, delivered: sink.received.length }).toEqual({ round, ok: 1, delivered: round });
    }
  });
});
