/**
 * A quarantine verdict at the end of DATA, over real sockets (postseal in-process between a
 * test client and a sink standing in for the reinjection smtpd): the message is held as
 * received and answered 250 naming its id, nothing goes downstream; a retry is held once; a
 * full or unusable folder is a 451 with a log line that names the folder, and nothing is held
 * or delivered (Postfix keeps the message).
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { inboundStages } from '../helpers/auth';
import { startDnsServer, type DnsServer } from '../helpers/dns-server';
import { startHarness, type Harness } from '../helpers/postseal';
import { startSink, type Sink } from '../helpers/sink';
import { TestClient } from '../helpers/smtp-client';

// Twelve author domains: the dmarc stage's DMARC_TOO_MANY_AUTHORS, which onReject decides.
const authors = Array.from({ length: 12 }, (_, i) => `u@q${i}.example`).join(', ');
const message = (n: string) => `From: ${authors}\r\nSubject: hold ${n}\r\nMessage-ID: <${n}@test>\r\n\r\nbody\r\n`;
const bank = { default: { stages: inboundStages, dmarc: { onReject: 'quarantine' } } };

let dns: DnsServer;
let sink: Sink;
beforeAll(async () => {
  dns = await startDnsServer({});
  sink = await startSink();
});
afterAll(async () => {
  await sink.close();
  await dns.close();
});

async function harness(quarantine: Record<string, unknown>): Promise<Harness> {
  return startHarness({ forwardPort: sink.port, banks: bank, main: { dns: { servers: [dns.server], timeoutMs: 300, retries: 0 }, quarantine } });
}

async function send(h: Harness, data: string, ident: string) {
  const c = await TestClient.connect(h.app.portOf('default'));
  try {
    return await c.send({ from: 'a@remote.test', to: ['bob@example.net'], data, xforward: `ADDR=198.51.100.9 HELO=mx.remote.test IDENT=${ident}` });
  } finally {
    await c.quit();
  }
}

it('holds the message as received and answers 250 2.7.0 with its id; nothing goes downstream', async () => {
  const dir = path.join(mkdtempSync(path.join(tmpdir(), 'q-hold-')), 'held');
  const h = await harness({ dir });
  try {
    const before = sink.received.length;
    const r = await send(h, message('one'), 'QID1');
    expect(r.final?.code).toBe(250);
    const id = /held in quarantine as ([a-z0-9]+)/.exec(r.final!.text)?.[1];
    expect(id).toBeDefined();
    expect(sink.received.length).toBe(before);
    // As received: no Authentication-Results or other field of ours.
    expect(readFileSync(path.join(dir, `${id}.eml`), 'latin1')).toBe(message('one'));
    const record = JSON.parse(readFileSync(path.join(dir, `${id}.json`), 'utf8'));
    expect(record).toMatchObject({
      queueId: 'QID1',
      bank: 'default',
      reason: 'DMARC_TOO_MANY_AUTHORS',
      envelope: { mailFrom: 'a@remote.test', recipients: [{ address: 'bob@example.net' }] },
    });
    expect(h.logs.find((l) => l.msg === 'message' && l.queueId === 'QID1')).toMatchObject({ verdict: 'quarantine', quarantineId: id });
  } finally {
    await h.close();
  }
});

it('holds a Postfix retry of the same message once, answering it with the same id', async () => {
  const dir = path.join(mkdtempSync(path.join(tmpdir(), 'q-hold-')), 'held');
  const h = await harness({ dir });
  try {
    const first = await send(h, message('retry'), 'QID2');
    const again = await send(h, message('retry'), 'QID2');
    expect(again.final?.code).toBe(250);
    expect(again.final?.text).toBe(first.final?.text);
    expect(readdirSync(dir)).toHaveLength(2);
    expect(h.logs.some((l) => String(l.msg).startsWith('a retry of a message settled before'))).toBe(true);
  } finally {
    await h.close();
  }
});

it('tempfails with 451 4.3.0 and a log line naming the folder when it is full; nothing is held or delivered', async () => {
  const dir = path.join(mkdtempSync(path.join(tmpdir(), 'q-hold-')), 'held');
  const h = await harness({ dir, minFreeBytes: 1099511627776 });
  try {
    const before = sink.received.length;
    const r = await send(h, message('full'), 'QID3');
    expect(r.final?.code).toBe(451);
    expect(r.final?.text).toMatch(/^4\.3\.0 .*cannot hold the message in quarantine/);
    expect(sink.received.length).toBe(before);
    expect(readdirSync(dir)).toEqual([]);
    const line = h.logs.find((l) => l.level === 50 && l.queueId === 'QID3');
    expect(line).toMatchObject({ quarantineDir: dir, code: 'QUARANTINE_FAILED' });
    expect(String(line?.msg)).toContain(`cannot hold the message in the quarantine folder ${dir}`);
  } finally {
    await h.close();
  }
});

it('refuses with 550 5.7.1 and an error log line a message too big for the quarantine, not 451 forever', async () => {
  const dir = path.join(mkdtempSync(path.join(tmpdir(), 'q-hold-')), 'held');
  const h = await harness({ dir, maxMessageSizeBytes: 1024 });
  try {
    const before = sink.received.length;
    const r = await send(h, `${message('big')}${'x'.repeat(2000)}\r\n`, 'QID5');
    expect(r.final?.code).toBe(550);
    expect(r.final?.text).toMatch(/^5\.7\.1 .*too big for the quarantine/);
    expect(sink.received.length).toBe(before);
    expect(h.logs.find((l) => l.level === 50 && l.queueId === 'QID5')).toMatchObject({ code: 'QUARANTINE_TOO_BIG' });
  } finally {
    await h.close();
  }
});

it('holds messages up to quarantine.maxTotalBytes, then refuses with 550 5.7.1 and an error log line', async () => {
  const dir = path.join(mkdtempSync(path.join(tmpdir(), 'q-hold-')), 'held');
  const h = await harness({ dir, maxTotalBytes: 2048 });
  try {
    expect((await send(h, `${message('t1')}${'y'.repeat(1200)}\r\n`, 'QID6')).final?.code).toBe(250);
    const r = await send(h, `${message('t2')}${'y'.repeat(1200)}\r\n`, 'QID7');
    expect(r.final?.code).toBe(550);
    expect(r.final?.text).toMatch(/^5\.7\.1 .*quarantine full/);
    expect(h.logs.find((l) => l.level === 50 && l.queueId === 'QID7')).toMatchObject({ code: 'QUARANTINE_FULL' });
    expect(readdirSync(dir).filter((f) => f.endsWith('.eml'))).toHaveLength(1);
  } finally {
    await h.close();
  }
});

it('tempfails with 451 when the folder cannot be made, says so at start-up, and writes nothing', async () => {
  const parent = mkdtempSync(path.join(tmpdir(), 'q-hold-'));
  writeFileSync(path.join(parent, 'file'), '');
  const dir = path.join(parent, 'file', 'held');
  const h = await harness({ dir });
  try {
    expect(h.logs.some((l) => l.level === 40 && String(l.msg).includes(`the quarantine folder ${dir} cannot be created`))).toBe(true);
    const r = await send(h, message('blocked'), 'QID4');
    expect(r.final?.code).toBe(451);
    expect(h.logs.find((l) => l.level === 50 && l.queueId === 'QID4')).toMatchObject({ errno: 'ENOTDIR', quarantineDir: dir });
    expect(existsSync(dir)).toBe(false);
  } finally {
    await h.close();
  }
});
