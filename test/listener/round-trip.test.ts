import { startSink, type Sink } from '../helpers/sink';
import { startHarness, type Harness } from '../helpers/postseal';
import { TestClient } from '../helpers/smtp-client';

const msg = 'From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nbody line\r\n';

describe('round trip through the proxy', () => {
  let sink: Sink;
  let h: Harness;
  beforeEach(async () => {
    sink = await startSink();
    h = await startHarness({ forwardPort: sink.port });
  });
  afterEach(async () => {
    await h.close();
    await sink.close();
  });

  it('delivers the message with its envelope and answers with the downstream reply', async () => {
    const c = await TestClient.connect(h.app.portOf('default'));
    const r = await c.send({ from: 'a@example.org', to: ['b@example.net', 'c@example.net'], data: msg, mailParams: 'BODY=8BITMIME' });
    await c.quit();
    expect(r.final?.code).toBe(250);
    expect(r.final?.text).toMatch(/^2\.0\.0 Ok: queued as SINK1/);
    expect(sink.received).toHaveLength(1);
    const got = sink.received[0];
    expect(got.mailFrom).toBe('a@example.org');
    expect(got.mailArgs.BODY).toBe('8BITMIME');
    expect(got.recipients.map((x) => x.address)).toEqual(['b@example.net', 'c@example.net']);
    expect(got.data.toString()).toBe(`X-Postseal-Trace: filter.test default\r\n${msg}`);
  });
});
