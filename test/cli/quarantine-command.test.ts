/**
 * `postseal quarantine` as a script would run it (the built command as a child process, JSON
 * output, exit codes), on a quarantine folder and sqlite index holding one message, with a
 * sink standing in for the bank's forward target: a release carries the original envelope
 * (BODY, RET, ENVID, NOTIFY, ORCPT, XFORWARD) and the bytes as received, once.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { createLogger } from '../../src/lib/log';
import { Quarantine } from '../../src/quarantine/quarantine';
import { openSqliteStore } from '../../src/store/sqlite';
import { cliMain, nodeBin, root } from '../helpers/cli';
import { startSink, type Sink } from '../helpers/sink';
import { heldInput } from '../helpers/quarantine';

// Asynchronously: a synchronous child would block this process's sink.
const run = promisify(execFile);
async function cli(...args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  try {
    const r = await run(nodeBin, [cliMain, 'quarantine', ...args, '--config', file], { encoding: 'utf8', timeout: 30000 });
    return { status: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { status: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const raw = Buffer.from('Received: by mx\r\nFrom: <a@remote.test>\r\nSubject: caught\r\n\r\n8bit \xe9\r\n', 'latin1');
let sink: Sink;
let dir: string;
let file: string;
let id: string;

beforeAll(async () => {
  sink = await startSink();
  dir = mkdtempSync(path.join(tmpdir(), 'quarantine-cli-'));
  mkdirSync(path.join(dir, 'banks'));
  const bank = YAML.parse(readFileSync(path.join(root, 'policy-banks/default.yaml'), 'utf8'));
  bank.forward = { protocol: 'smtp', host: '127.0.0.1', port: sink.port };
  writeFileSync(path.join(dir, 'banks', 'default.yaml'), YAML.stringify(bank));
  file = path.join(dir, 'postseal.yaml');
  const main = { bankDir: 'banks', listeners: [{ port: 0, bank: 'default' }], store: { sqlite: { file: 'state.db' } }, quarantine: { dir: 'held' } };
  writeFileSync(file, YAML.stringify(main));
  const store = openSqliteStore({ file: path.join(dir, 'state.db'), keyPrefix: 'postseal:', busyTimeoutMs: 2000 });
  const q = new Quarantine(
    { dir: path.join(dir, 'held'), maxMessageSizeBytes: 1 << 20, maxTotalBytes: 0, minFreeBytes: 0, maxAgeDays: 30, sweepIntervalMs: 60000 },
    store,
    createLogger('silent'),
  );
  ({ id } = await q.hold({
    session: 's1',
    queueId: '4QID',
    bank: 'default',
    decidedBy: 'default',
    reason: 'DMARC_FAIL_QUARANTINE',
    findings: ['DMARC_FAIL_QUARANTINE(remote.test p=quarantine)'],
    envelope: {
      mailFrom: 'a@remote.test',
      body: '8BITMIME',
      smtputf8: false,
      ret: 'HDRS',
      envid: 'env+2Bid+3D1',
      recipients: [{ address: 'bob@example.test', notify: 'SUCCESS,FAILURE', orcpt: 'rfc822;bob+2Btag@example.test' }],
    },
    client: { addr: '198.51.100.7', name: 'mx.remote.test', helo: 'mx.remote.test', ident: '4QID' },
    peer: '127.0.0.1',
    size: raw.length,
    raw: async function* () {
      yield raw;
    },
    subject: 'caught',
  }));
  await store.close();
}, 30000);
afterAll(() => sink.close());

it('lists held messages as JSON, and filters them', async () => {
  const r = await cli('list', '--json');
  expect(r.status).toBe(0);
  expect(JSON.parse(r.stdout)).toEqual([expect.objectContaining({ id, queueId: '4QID', reason: 'DMARC_FAIL_QUARANTINE', released: [] })]);
  expect(JSON.parse((await cli('list', '--json', '--reason', 'virus')).stdout)).toEqual([]);
  expect(JSON.parse((await cli('list', '--json', '--rcpt', 'example.test', '--since', '1d')).stdout)).toHaveLength(1);
  const text = await cli('list');
  expect(text.stdout).toMatch(new RegExp(`^${id} \\S+ DMARC_FAIL_QUARANTINE <a@remote.test> -> bob@example.test ${raw.length}B caught$`, 'm'));
});

it('shows the record as JSON and the message as received with --raw', async () => {
  const j = await cli('show', id, '--json');
  expect(j.status).toBe(0);
  expect(JSON.parse(j.stdout).envelope).toEqual(expect.objectContaining({ envid: 'env+2Bid+3D1', ret: 'HDRS' }));
  const r = await run(nodeBin, [cliMain, 'quarantine', 'show', id, '--raw', '--config', file], { encoding: 'buffer' });
  expect(r.stdout).toEqual(raw);
});

it('exits 1 for an id that is not held and 2 for usage errors', async () => {
  expect((await cli('show', 'ffffffffffffffffffffffff')).status).toBe(1);
  expect(JSON.parse((await cli('delete', 'ffffffffffffffffffffffff', '--json')).stdout)).toEqual({ id: 'ffffffffffffffffffffffff', error: 'not found' });
  expect((await cli('show', '../etc/passwd')).status).toBe(2);
  expect((await cli('list', '--since', 'yesterday')).status).toBe(2);
  expect((await cli('show', id, '--raw', '--json')).status).toBe(2);
  expect((await cli('release', id, '--to', 'not an address')).status).toBe(2);
  expect((await cli('purge')).status).toBe(2);
});

it('exits 3 naming the folder, quarantine.dir and the fix when the folder is missing or not a folder, not "no held message"; list warns', async () => {
  const main = YAML.parse(readFileSync(file, 'utf8'));
  const good = file;
  writeFileSync(path.join(dir, 'a-file'), '');
  try {
    for (const [qdir, says] of [
      ['typo-held', /quarantine folder \S+typo-held \(quarantine.dir in \S+\) does not exist: point quarantine.dir/],
      ['a-file/held', /\S+a-file\/held \(quarantine.dir in \S+\) is not a folder/],
      ['a-file', /\S+a-file \(quarantine.dir in \S+\) is not a folder/],
    ] as const) {
      file = path.join(dir, `postseal-${qdir.replace('/', '-')}.yaml`);
      writeFileSync(file, YAML.stringify({ ...main, quarantine: { dir: qdir } }));
      for (const args of [
        ['show', id],
        ['delete', id],
        ['release', id],
      ]) {
        const r = await cli(...args);
        expect({ args, qdir, status: r.status }).toEqual({ args, qdir, status: 3 });
        expect(r.stderr).toMatch(says);
      }
      // list reads the index, which a host without the folder may share: listed, with a warning.
      const listed = await cli('list', '--json');
      expect(listed.status).toBe(0);
      expect(JSON.parse(listed.stdout).map((e: { id: string }) => e.id)).toContain(id);
      expect(listed.stderr).toMatch(says);
    }
  } finally {
    file = good;
  }
  expect((await cli('show', id)).status).toBe(0);
});

it('says which host holds a message listed from a store shared with it, rather than "no held message"', async () => {
  const store = openSqliteStore({ file: path.join(dir, 'state.db'), keyPrefix: 'postseal:', busyTimeoutMs: 2000 });
  const settings = { dir: path.join(dir, 'mx2-held'), maxMessageSizeBytes: 1 << 20, maxTotalBytes: 0, minFreeBytes: 0, maxAgeDays: 30, sweepIntervalMs: 60000 };
  const mx2 = new Quarantine(settings, store, createLogger('silent'), Date.now, 'mx2.example.test');
  const other = await mx2.hold(heldInput(raw, { session: 's9', queueId: '4MX2' }));
  await store.close();
  try {
    const shown = await cli('show', other.id);
    expect(shown.status).toBe(1);
    expect(shown.stderr).toBe(`postseal: ${other.id} is held on mx2.example.test, in that host's quarantine folder; run the command there\n`);
    expect(JSON.parse((await cli('release', other.id, '--json')).stdout)).toEqual({ id: other.id, error: 'held on another host', host: 'mx2.example.test' });
  } finally {
    await cli('delete', other.id);
    const s2 = openSqliteStore({ file: path.join(dir, 'state.db'), keyPrefix: 'postseal:', busyTimeoutMs: 2000 });
    await s2.delete(`quarantine:${other.id}`);
    await s2.close();
  }
});

it('exits 3 when the forward target refuses, and records no release', async () => {
  sink.behaviour = { fail: { data: [451, '4.3.0 try later'] } };
  try {
    const r = await cli('release', id, '--json');
    expect(r.status).toBe(3);
    expect(JSON.parse(r.stdout)).toMatchObject({ id, ok: false, reply: expect.stringContaining('451') });
  } finally {
    sink.behaviour = {};
  }
  expect(JSON.parse((await cli('show', id, '--json')).stdout).released).toEqual([]);
});

it('releases with the original envelope and bytes, once; again only with --force, and --to another address', async () => {
  const before = sink.received.length;
  const r = await cli('release', id, '--json');
  expect(r.status).toBe(0);
  expect(JSON.parse(r.stdout)).toMatchObject({ id, ok: true, accepted: ['bob@example.test'], refused: [] });
  expect(JSON.parse(r.stderr.trim().split('\n').pop()!)).toMatchObject({ msg: 'quarantined message released', quarantineId: id, queueId: '4QID' });
  expect(sink.received.length).toBe(before + 1);
  const got = sink.received[sink.received.length - 1];
  expect(got.mailFrom).toBe('a@remote.test');
  // The sink (smtp-server) decodes xtext: what was sent was the xtext as held.
  expect(got.mailArgs).toMatchObject({ BODY: '8BITMIME', RET: 'HDRS', ENVID: 'env+id=1' });
  expect(got.recipients).toEqual([{ address: 'bob@example.test', args: expect.objectContaining({ NOTIFY: 'SUCCESS,FAILURE', ORCPT: 'rfc822;bob+tag@example.test' }) }]);
  expect(got.xforward).toMatchObject({ ADDR: '198.51.100.7', IDENT: '4QID' });
  expect(got.data).toEqual(raw);

  const again = await cli('release', id);
  expect(again.status).toBe(3);
  expect(again.stderr).toMatch(/already released at .*--force/);
  expect(sink.received.length).toBe(before + 1);

  const other = await cli('release', id, '--to', 'postmaster@example.test', '--force', '--json');
  expect(other.status).toBe(0);
  expect(sink.received[sink.received.length - 1].recipients.map((x) => x.address)).toEqual(['postmaster@example.test']);
  expect(JSON.parse((await cli('show', id, '--json')).stdout).released.map((x: { to: string[] }) => x.to)).toEqual([['bob@example.test'], ['postmaster@example.test']]);
});

it('with --force sends only to recipients that did not accept it yet, so nobody gets it twice', async () => {
  const before = sink.received.length;
  const r = await cli('release', id, '--force', '--json');
  expect(r.status).toBe(3);
  expect(JSON.parse(r.stdout)).toMatchObject({ id, ok: false, error: expect.stringMatching(/^every recipient already accepted it/) });
  expect(sink.received.length).toBe(before);
});

it('refuses a release while another one holds the fresh ID.releasing lock, and takes over a stale one', async () => {
  const before = sink.received.length;
  const lockFile = path.join(dir, 'held', `${id}.releasing`);
  writeFileSync(lockFile, '1\n');
  const busy = await cli('release', id, '--to', 'x@example.test', '--force', '--json');
  expect(busy.status).toBe(3);
  expect(JSON.parse(busy.stdout).error).toMatch(/^another release of .* is running/);
  expect(sink.received.length).toBe(before);
  const old = new Date(Date.now() - 3600_000);
  utimesSync(lockFile, old, old);
  expect((await cli('release', id, '--to', 'x@example.test', '--force', '--json')).status).toBe(0);
  expect(sink.received.length).toBe(before + 1);
  expect(existsSync(lockFile)).toBe(false);
});

it('deletes a held message; a second delete finds nothing', async () => {
  expect(JSON.parse((await cli('delete', id, '--json')).stdout)).toEqual({ id, deleted: true });
  expect((await cli('delete', id)).status).toBe(1);
  expect((await cli('list')).stdout).toBe('no held messages\n');
});

it('prints no control characters from a held envelope or header (no terminal escape injection)', async () => {
  const store = openSqliteStore({ file: path.join(dir, 'state.db'), keyPrefix: 'postseal:', busyTimeoutMs: 2000 });
  const q = new Quarantine(
    { dir: path.join(dir, 'held'), maxMessageSizeBytes: 1 << 20, maxTotalBytes: 0, minFreeBytes: 0, maxAgeDays: 30, sweepIntervalMs: 60000 },
    store,
    createLogger('silent'),
  );
  const evil = await q.hold({
    session: 's2',
    queueId: '4EVIL',
    bank: 'default',
    decidedBy: 'default',
    reason: 'DMARC_FAIL_QUARANTINE',
    findings: ['DMARC_FAIL_QUARANTINE(\x1b]0;owned\x07)'],
    envelope: { mailFrom: 'a\x1b[2J@remote.test', smtputf8: true, recipients: [{ address: 'b\u009b31m@example.test' }] },
    client: { addr: '198.51.100.7', helo: 'mx\x1b[31m' },
    peer: '127.0.0.1',
    size: raw.length,
    raw: async function* () {
      yield raw;
    },
    subject: 'caught',
  });
  await store.close();
  const listed = await cli('list');
  const shown = await cli('show', evil.id);
  const json = await cli('show', evil.id, '--json');
  for (const out of [listed.stdout, shown.stdout, json.stdout]) expect(out).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f]/);
  expect(shown.stdout).toContain('<a?[2J@remote.test>');
  expect(JSON.parse(json.stdout).envelope.recipients[0].address).toBe('b\u009b31m@example.test');
});
