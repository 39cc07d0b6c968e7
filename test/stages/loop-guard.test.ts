import { startSink } from '../helpers/sink';
import { startHarness } from '../helpers/postseal';
import { TestClient } from '../helpers/smtp-client';

async function sendThrough(data: string, banks?: Record<string, Record<string, unknown>>) {
  const sink = await startSink();
  const h = await startHarness({ forwardPort: sink.port, banks });
  const c = await TestClient.connect(h.app.portOf('default'));
  const r = await c.send({ from: 'a@example.org', to: ['b@example.net'], data });
  await c.quit();
  await h.close();
  await sink.close();
  return { r, sink, h };
}

describe('loop-guard', () => {
  it('mail that already carries our trace for this bank is refused with 554 5.4.6', async () => {
    const { r, sink } = await sendThrough('X-Postseal-Trace: filter.test default\r\nFrom: a@example.org\r\n\r\nx\r\n');
    expect(r.final?.code).toBe(554);
    expect(r.final?.text).toMatch(/^5\.4\.6 /);
    expect(sink.received).toHaveLength(0);
  });

  it('a trace of another bank or another host is not a loop', async () => {
    const { r } = await sendThrough('X-Postseal-Trace: filter.test ORIGINATING\r\nX-Postseal-Trace: other.host default\r\nFrom: a@example.org\r\n\r\nx\r\n');
    expect(r.final?.code).toBe(250);
  });

  it('more Received fields than maxReceived is a loop', async () => {
    const received = 'Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n'.repeat(4);
    const { r } = await sendThrough(`${received}From: a@example.org\r\n\r\nx\r\n`, { default: { loopGuard: { maxReceived: 3 } } });
    expect(r.final?.code).toBe(554);
  });

  it('adds no trace field when traceHeader is off', async () => {
    const { sink } = await sendThrough('From: a@example.org\r\n\r\nx\r\n', { default: { loopGuard: { traceHeader: false } } });
    expect(sink.received[0].data.toString()).toBe('From: a@example.org\r\n\r\nx\r\n');
  });
});
