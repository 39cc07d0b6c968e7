import { startSink, type Sink } from '../helpers/sink';
import { startHarness, type Harness } from '../helpers/postseal';
import { TestClient } from '../helpers/smtp-client';

const msg = 'From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nbody\r\n';

describe('the upstream reply mirrors the downstream', () => {
  let sink: Sink;
  let h: Harness;
  let c: TestClient;
  beforeEach(async () => {
    sink = await startSink();
    h = await startHarness({ forwardPort: sink.port, banks: { default: { forward: { commandTimeoutMs: 500, dataDoneTimeoutMs: 800 } } } });
    c = await TestClient.connect(h.app.portOf('default'));
  });
  afterEach(async () => {
    await c.quit();
    await h.close();
    await sink.close();
  });

  const send = () => c.send({ from: 'a@example.org', to: ['b@example.net'], data: msg });

  it.each([
    ['4xx', 451, '4.3.0 queue file write error'],
    ['5xx', 554, '5.7.1 sender refused'],
  ])('a downstream %s at MAIL is passed up, with its code and text, to every recipient', async (_n, code, text) => {
    sink.behaviour = { fail: { mail: [code, text] } };
    const r = await c.send({ from: 'a@example.org', to: ['b@example.net', 'd@example.net'], data: msg });
    // MAIL goes downstream with the first RCPT (one round trip), so the recipients hear it.
    expect(r.mail.code).toBe(250);
    expect(r.rcpts.map((x) => [x.code, x.text])).toEqual([
      [code, text],
      [code, text],
    ]);
    expect(r.final).toBeUndefined();
    expect(sink.received).toHaveLength(0);
    // Postfix will log the reply as the answer to RCPT; postseal's line says it was MAIL's, as written.
    expect(h.logs.filter((l) => String(l.msg).startsWith('the downstream refused MAIL'))).toEqual([expect.objectContaining({ reply: `${code} ${text}`, level: 40 })]);
  });

  it.each([
    ['4xx', 450, '4.2.0 mailbox busy'],
    ['5xx', 550, '5.1.1 no such user'],
  ])('a downstream %s at RCPT is passed up for that recipient', async (_n, code, text) => {
    sink.behaviour = { fail: { rcpt: [code, text] } };
    const r = await send();
    expect(r.rcpts[0].code).toBe(code);
    expect(r.rcpts[0].text).toBe(text);
  });

  it.each([
    ['4xx', 452, '4.3.1 insufficient storage'],
    ['5xx', 552, '5.3.4 message too big for me'],
  ])('a downstream %s at end of data is passed up, never 250', async (_n, code, text) => {
    sink.behaviour = { fail: { data: [code, text] } };
    const r = await send();
    expect(r.final?.code).toBe(code);
    expect(r.final?.text).toBe(text);
  });

  it('a downstream that stalls at MAIL gives 451 4.4.2 to the recipient', async () => {
    sink.behaviour = { stall: 'mail' };
    const r = await send();
    expect(r.mail.code).toBe(250);
    expect(r.rcpts[0].code).toBe(451);
    expect(r.rcpts[0].text).toMatch(/^4\.4\.2 /);
  });

  it('a downstream that stalls at RCPT gives 451 4.4.2', async () => {
    sink.behaviour = { stall: 'rcpt' };
    const r = await send();
    expect(r.rcpts[0].code).toBe(451);
    expect(r.rcpts[0].text).toMatch(/^4\.4\.2 /);
  });

  it('a downstream that stalls after the data gives 451 4.4.2, not 250', async () => {
    sink.behaviour = { stall: 'data' };
    const r = await send();
    expect(r.final?.code).toBe(451);
    expect(r.final?.text).toMatch(/^4\.4\.2 /);
  });

  it('a refused recipient is refused upstream while the others are delivered once', async () => {
    sink.behaviour = { refuseRcpt: { 'x@example.net': [550, '5.1.1 unknown user'] } };
    const r = await c.send({ from: 'a@example.org', to: ['b@example.net', 'x@example.net', 'd@example.net'], data: msg });
    expect(r.rcpts.map((x) => x.code)).toEqual([250, 550, 250]);
    expect(r.final?.code).toBe(250);
    expect(sink.received).toHaveLength(1);
    expect(sink.received[0].recipients.map((x) => x.address)).toEqual(['b@example.net', 'd@example.net']);
  });

  it('the connection is reused for the next message after a failed one', async () => {
    sink.behaviour = { fail: { data: [451, '4.3.0 try later'] } };
    expect((await send()).final?.code).toBe(451);
    sink.behaviour = {};
    expect((await send()).final?.code).toBe(250);
    expect(sink.received).toHaveLength(1);
    expect(sink.connections).toBe(1);
  });
});

describe('a downstream that is not there', () => {
  it('gives 451 4.4.1 to every recipient, so Postfix keeps the mail', async () => {
    const sink = await startSink();
    const port = sink.port;
    await sink.close();
    const h = await startHarness({ forwardPort: port });
    const c = await TestClient.connect(h.app.portOf('default'));
    const r = await c.send({ from: 'a@example.org', to: ['b@example.net', 'd@example.net'], data: msg });
    expect(r.rcpts.map((x) => x.code)).toEqual([451, 451]);
    expect(r.rcpts[1].text).toMatch(/^4\.4\.1 /);
    await c.quit();
    await h.close();
  });
});
