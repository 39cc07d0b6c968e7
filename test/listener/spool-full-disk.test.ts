/**
 * A full spool disk over real sockets (spool.dir on a small tmpfs, test/helpers/tmpfs.ts): a
 * message that cannot be spooled, the disk full before its first byte or in its middle, is
 * answered 452 4.3.1 (RFC 3463 "mail system full", Postfix defers it), with an error line
 * naming the folder and ENOSPC; nothing goes downstream, no spool file stays, and the same
 * session takes the same message whole once space returns.
 */
import { formatReply, replies } from '../../src/smtp/replies';
import { startHarness, type Harness } from '../helpers/postseal';
import { startSink, type Sink } from '../helpers/sink';
import { TestClient } from '../helpers/smtp-client';
import { mountSmallDisk, type SmallDisk } from '../helpers/tmpfs';

const THRESHOLD = 1024;
/** About 160 KB: over the memory threshold, and over what is left on the disk filled below. */
const large = `From: a@example.com\r\nTo: b@example.net\r\nSubject: large\r\n\r\n${'x'.repeat(78).concat('\r\n').repeat(2000)}`;

let disk: SmallDisk;
let sink: Sink;
let h: Harness;
beforeAll(async () => {
  disk = mountSmallDisk(256 * 1024);
  sink = await startSink();
  h = await startHarness({ forwardPort: sink.port, main: { spool: { dir: disk.dir, memoryThresholdBytes: THRESHOLD } } });
});
afterEach(() => disk?.free());
afterAll(async () => {
  await h?.close();
  await sink?.close();
  disk?.unmount();
});

const spoolFiles = () => h.spoolFiles().filter((n) => n.startsWith('postseal-'));

it.each([
  ['before the first byte', 0],
  ['in the middle of the message', 64 * 1024],
])('a disk full %s is 452 4.3.1 with a line naming the folder; the same session takes the message once space returns', async (_when, leave) => {
  await disk.fill(leave);
  const before = sink.received.length;
  const logged = h.logs.length;
  const c = await TestClient.connect(h.app.portOf('default'));
  try {
    const refused = await c.send({ from: 'a@example.com', to: ['b@example.net'], data: large });
    expect(`${refused.final?.code} ${refused.final?.text}`).toBe(formatReply(replies.spoolFull));
    expect(sink.received.length).toBe(before);
    expect(spoolFiles()).toEqual([]);
    const lines = h.logs.slice(logged);
    expect(lines.find((l) => l.spoolDir === disk.dir)).toMatchObject({ level: 50, errno: 'ENOSPC', code: 'SPOOL_FULL', msg: expect.stringContaining(disk.dir) });
    expect(lines.find((l) => l.msg === 'message')).toMatchObject({ reply: formatReply(replies.spoolFull), code: 'SPOOL_FULL' });

    await disk.free();
    const taken = await c.send({ from: 'a@example.com', to: ['b@example.net'], data: large });
    expect(taken.final?.code).toBe(250);
    expect(sink.received.length).toBe(before + 1);
    expect(sink.received.at(-1)?.data.toString('latin1')).toContain(large.slice(-200));
    expect(sink.received.at(-1)?.data.length).toBeGreaterThanOrEqual(large.length);
  } finally {
    await c.quit();
  }
  expect(spoolFiles()).toEqual([]);
});
