/**
 * The message deadline (timeouts.messageDeadlineMs) over real sockets: a message whose checks
 * outlast it is answered 451 4.4.7 and not delivered, and a delivered message leaves no
 * deadline timer behind.
 */
import { startDnsServer, type DnsServer } from '../helpers/dns-server';
import { startHarness, type Harness } from '../helpers/postseal';
import { startSink, type Sink } from '../helpers/sink';
import { TestClient } from '../helpers/smtp-client';

const message = (from: string) => `From: ${from}\r\nTo: b@example.net\r\nSubject: deadline\r\n\r\nbody\r\n`;

let dns: DnsServer;
let sink: Sink;
let h: Harness;
beforeAll(async () => {
  // The DMARC record of slow.example is never answered; that of fast.example is "none".
  dns = await startDnsServer({ '_dmarc.slow.example': { behaviour: 'timeout' }, '_dmarc.fast.example': { TXT: ['v=DMARC1; p=none'] } });
  sink = await startSink();
  h = await startHarness({
    forwardPort: sink.port,
    banks: { default: { stages: ['dmarc'], timeouts: { messageDeadlineMs: 1000, stageTimeoutMs: 30000 } } },
    main: { dns: { servers: [dns.server], timeoutMs: 5000, retries: 0 } },
  });
});
afterAll(async () => {
  await h.close();
  await sink.close();
  await dns.close();
});

test('checks that outlast the message deadline get 451 4.4.7 and nothing is delivered; the next message on the connection goes through', async () => {
  const c = await TestClient.connect(h.app.portOf('default'));
  const started = performance.now();
  const slow = await c.send({ from: 'a@slow.example', to: ['b@example.net'], data: message('a@slow.example') });
  expect(performance.now() - started).toBeLessThan(4000);
  expect(slow.final).toMatchObject({ code: 451 });
  expect(slow.final?.text).toMatch(/^4\.4\.7 /);
  expect(sink.received).toHaveLength(0);
  expect(h.logs.find((l) => l.msg === 'message')).toMatchObject({ reason: 'DEADLINE_EXCEEDED' });

  const fast = await c.send({ from: 'a@fast.example', to: ['b@example.net'], data: message('a@fast.example') });
  await c.quit();
  expect(fast.final).toMatchObject({ code: 250 });
  expect(sink.received).toHaveLength(1);
});

test('a delivered message leaves no timer running until its deadline', async () => {
  const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  const c = await TestClient.connect(h.app.portOf('default'));
  const send = () => c.send({ from: 'a@fast.example', to: ['b@example.net'], data: message('a@fast.example') });
  // The first message opens (and pools) the downstream connection with its idle timer.
  expect((await send()).final).toMatchObject({ code: 250 });
  const before = timers();
  for (let i = 0; i < 5; i++) expect((await send()).final).toMatchObject({ code: 250 });
  expect(timers()).toBe(before);
  await c.quit();
});
