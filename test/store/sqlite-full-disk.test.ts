/**
 * postseal with its sqlite store on a disk that fills (the store file on a small tmpfs,
 * test/helpers/tmpfs.ts), over real SMTP: the DMARC results the store cannot take are lost,
 * never the mail (each message is delivered, 250 from the downstream); the loss is one log line,
 * not one per message; once space returns the store takes results again.
 */
import path from 'node:path';
import { openSqliteStore } from '../../src/store/sqlite';
import { StoredDmarcResults, utcDay } from '../../src/store/dmarc-results';
import { startDnsServer, type DnsServer } from '../helpers/dns-server';
import { startHarness, type Harness } from '../helpers/postseal';
import { startSink, type Sink } from '../helpers/sink';
import { TestClient } from '../helpers/smtp-client';
import { mountSmallDisk, type SmallDisk } from '../helpers/tmpfs';

let disk: SmallDisk;
let dns: DnsServer;
let sink: Sink;
let h: Harness;
beforeAll(async () => {
  disk = mountSmallDisk(256 * 1024);
  dns = await startDnsServer({
    '_dmarc.example.org': { TXT: ['v=DMARC1; p=none; rua=mailto:dmarc@example.org'] },
    '_dmarc.later.example': { TXT: ['v=DMARC1; p=none; rua=mailto:dmarc@later.example'] },
  });
  sink = await startSink();
  h = await startHarness({
    forwardPort: sink.port,
    banks: { default: { stages: ['spf', 'dmarc'], notify: { host: '127.0.0.1', port: sink.port } } },
    main: {
      dns: { servers: [dns.server], timeoutMs: 2000, retries: 0 },
      store: { backend: 'sqlite', keyPrefix: 'ps:', sqlite: { file: path.join(disk.dir, 'state.db') } },
      // Results are kept only with aggregate reports on (nothing of today is finished: nothing is sent).
      services: { dmarcReports: { enabled: true } },
    },
  });
});
afterEach(() => disk?.free());
afterAll(async () => {
  await h?.close();
  await sink?.close();
  await dns?.close();
  disk?.unmount();
});

const send = async (from: string) => {
  const c = await TestClient.connect(h.app.portOf('default'));
  try {
    const r = await c.send({ from, to: ['b@example.net'], data: `From: ${from}\r\nTo: b@example.net\r\nSubject: s\r\n\r\nbody\r\n` });
    return r.final;
  } finally {
    await c.quit();
  }
};

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
  const before = sink.received.length;
  for (let i = 0; i < 5; i++) expect(await send(`a${i}@example.org`)).toMatchObject({ code: 250 });
  expect(sink.received.length).toBe(before + 5);
  const lost = h.logs.filter((l) => String(l.msg).startsWith('DMARC result not stored'));
  expect(lost).toEqual([expect.objectContaining({ level: 50, code: 'STORE_UNAVAILABLE', heldBack: 0 })]);
  expect(String((lost[0].err as { message: string }).message)).toContain('disk is full');

  await disk.free();
  expect(await send('a@later.example')).toMatchObject({ code: 250 });
  expect(await stored('later.example')).toEqual([expect.objectContaining({ headerFrom: 'later.example' })]);
});
