/**
 * The spool folder over real sockets: a relative spool.dir is the folder next to the config
 * file, created 0700 at start-up; a folder that disappears while postseal runs defers large
 * messages with the spool's own reply and a log line naming the folder and the errno, not
 * with "Message data incomplete" (which means the client went away).
 */
import { rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { formatReply, replies } from '../../src/smtp/replies';
import { startHarness } from '../helpers/postseal';
import { startSink, type Sink } from '../helpers/sink';
import { TestClient } from '../helpers/smtp-client';

const THRESHOLD = 1024;
/** Over the memory threshold, so it needs a spool file. */
const large = `From: a@example.com\r\nTo: b@example.net\r\nSubject: large\r\n\r\n${'x'.repeat(76).concat('\r\n').repeat(200)}`;

let sink: Sink;
beforeAll(async () => {
  sink = await startSink();
});
afterAll(() => sink.close());

test('a relative spool.dir is the folder next to the config file, created with mode 0700, and large messages go through it', async () => {
  const h = await startHarness({ forwardPort: sink.port, main: { spool: { dir: 'spool', memoryThresholdBytes: THRESHOLD } } });
  try {
    const spoolDir = path.join(h.dir, 'spool');
    expect(statSync(spoolDir).isDirectory()).toBe(true);
    expect(statSync(spoolDir).mode & 0o777).toBe(0o700);
    const c = await TestClient.connect(h.app.portOf('default'));
    const r = await c.send({ from: 'a@example.com', to: ['b@example.net'], data: large });
    await c.quit();
    expect(r.final?.code).toBe(250);
    expect(sink.received.at(-1)?.data.length).toBeGreaterThan(THRESHOLD);
  } finally {
    await h.close();
  }
});

test('a spool folder removed while running defers large messages with the spool reply and logs the folder and errno', async () => {
  const h = await startHarness({ forwardPort: sink.port, main: { spool: { dir: 'spool', memoryThresholdBytes: THRESHOLD } } });
  try {
    const spoolDir = path.join(h.dir, 'spool');
    rmSync(spoolDir, { recursive: true });
    const before = sink.received.length;
    const c = await TestClient.connect(h.app.portOf('default'));
    const r = await c.send({ from: 'a@example.com', to: ['b@example.net'], data: large });
    await c.quit();
    expect(`${r.final?.code} ${r.final?.text}`).toBe(formatReply(replies.spoolFailed));
    expect(formatReply(replies.spoolFailed)).not.toBe(formatReply(replies.upstreamAborted));
    expect(sink.received.length).toBe(before);
    expect(h.logs.find((l) => l.spoolDir === spoolDir)).toMatchObject({ level: 50, errno: 'ENOENT' });
    expect(h.logs.find((l) => l.msg === 'message')).toMatchObject({ reply: formatReply(replies.spoolFailed), code: 'SPOOL_FAILED' });
  } finally {
    await h.close();
  }
});
