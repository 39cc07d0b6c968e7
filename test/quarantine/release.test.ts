/**
 * A release to an LMTP forward target that accepts the message for one recipient and refuses
 * it for the other at the end of data: the accepted one is recorded as released, and
 * `force` then sends only to the other, so nobody gets the message twice.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLogger } from '../../src/lib/log';
import { Quarantine } from '../../src/quarantine/quarantine';
import { releaseHeld } from '../../src/quarantine/release';
import { openSqliteStore } from '../../src/store/sqlite';
import { loadTestBank } from '../helpers/banks';
import { startSink } from '../helpers/sink';

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
