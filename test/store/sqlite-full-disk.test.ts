/**
 * postseal with its sqlite store on a disk that fills (the store file on a small tmpfs,
 * test/helpers/tmpfs.ts), over real SMTP: the DMARC results the store cannot take are lost,
 * never the mail (each message is delivered, 250 from the downstream); the loss is one log line,
 * not one per message; once space returns the store takes results again.
 */
import { type DmarcHarness, startDmarcHarness } from '../helpers/dmarc-harness';
import path from 'node:path';
import { openSqliteStore } from '../../src/store/sqlite';
import { StoredDmarcResults, utcDay } from '../../src/store/dmarc-results';
import { mountSmallDisk, type SmallDisk } from '../helpers/tmpfs';

let disk: SmallDisk;
let w: DmarcHarness;
beforeAll(async () => {
  disk = mountSmallDisk(256 * 1024);
  w = await startDmarcHarness(
    {
      '_dmarc.example.org': { TXT: ['v=DMARC1; p=none; rua=mailto:dmarc@example.org'] },
      '_dmarc.later.example': { TXT: ['v=DMARC1; p=none; rua=mailto:dmarc@later.example'] },
    },
    { backend: 'sqlite', keyPrefix: 'ps:', sqlite: { file: path.join(disk.dir, 'state.db') } },
  );
});
afterEach(() => disk?.free());
afterAll(async () => {
  await w?.close();
  disk?.unmount();
});

const send = (from: string) => w.send(from);

const stored = async (domain: string) => {
  const reader = openSqliteStore({ file: path.join(disk.dir, 'state.db'), keyPrefix: 'ps:', busyTimeoutMs: 1000 });
  try {
    return await new StoredDmarcResults(reader).take(domain, utcDay(new Date()));
  } finally {
    await reader.close();
  }
};

test('on a full disk every message is delivered, the lost DMARC results are one log line, and results are stored again once space returns', async () => {
  await disk.fill();
  const before = w.sink.received.length;
  for (let i = 0; i < 5; i++) expect(await send(`a${i}@example.org`)).toMatchObject({ code: 250 });
  expect(w.sink.received.length).toBe(before + 5);
  const lost = w.h.logs.filter((l) => String(l.msg).startsWith('DMARC result not stored'));
  expect(lost).toEqual([expect.objectContaining({ level: 50, code: 'STORE_UNAVAILABLE', heldBack: 0 })]);
  expect(String((lost[0].err as { message: string }).message)).toContain('disk is full');

  await disk.free();
  expect(await send('a@later.example')).toMatchObject({ code: 250 });
  expect(await stored('later.example')).toEqual([expect.objectContaining({ headerFrom: 'later.example' })]);
});
