import { startSink, type Sink } from '../helpers/sink';
import { startHarness, type Harness } from '../helpers/postseal';
import { TestClient } from '../helpers/smtp-client';

const head = 'From: a@example.org\r\nTo: b@example.net\r\nSubject: t\r\n\r\n';

describe('bad input gets a clear reply and loses nothing', () => {
  let sink: Sink;
  let h: Harness;
  beforeEach(async () => {
    sink = await startSink();
    h = await startHarness({ forwardPort: sink.port, banks: { default: { maxMessageSizeBytes: 1_000_000 } } });
  });
  afterEach(async () => {
    await h.close();
    await sink.close();
    expect(h.spoolFiles()).toEqual([]);
  });

  const send = async (data: string | Buffer, mailParams?: string) => {
    const c = await TestClient.connect(h.app.portOf('default'));
    const r = await c.send({ from: 'a@example.org', to: ['b@example.net'], data, mailParams });
    await c.quit();
    return r;
  };

  it('bare LF line endings are delivered as CRLF', async () => {
    const r = await send('From: a@example.org\nSubject: lf\n\nline one\nline two\r\n');
    expect(r.final?.code).toBe(250);
    expect(sink.received[0].data.toString()).toBe('X-Postseal-Trace: filter.test default\r\nFrom: a@example.org\r\nSubject: lf\r\n\r\nline one\r\nline two\r\n');
  });

  it('<LF>.<LF> inside DATA is not an end of data and makes no second message', async () => {
    const r = await send(`${head}before\n.\nMAIL FROM:<evil@example.org>\r\nafter\r\n`);
    expect(r.final?.code).toBe(250);
    expect(sink.received).toHaveLength(1);
    const body = sink.received[0].data.toString();
    expect(body).toContain('MAIL FROM:<evil@example.org>');
    expect(body).toContain('after');
  });

  it('lines starting with a dot keep their dot', async () => {
    const r = await send(`${head}..leading dot\r\n...two\r\n`);
    expect(r.final?.code).toBe(250);
    expect(sink.received[0].data.toString()).toMatch(/\r\n\r\n\.leading dot\r\n\.\.two\r\n$/);
  });

  it('NUL bytes are removed by default (headerSanity.nul: fix)', async () => {
    const r = await send(Buffer.from(`From: a@example.org\r\nSubject: n\x00ul\r\n\r\nbo\x00dy\r\n`, 'latin1'));
    expect(r.final?.code).toBe(250);
    const got = sink.received[0].data;
    expect(got.includes(0)).toBe(false);
    expect(got.toString()).toContain('body');
  });

  it('a 5 MB single line over the limit is refused with 552 5.3.4 after the final dot', async () => {
    const r = await send(`${head}${'x'.repeat(5 * 1024 * 1024)}\r\n`);
    expect(r.final?.code).toBe(552);
    expect(r.final?.text).toMatch(/^5\.3\.4 /);
    expect(sink.received).toHaveLength(0);
  });

  it('oversized mail declared with SIZE= is refused at MAIL', async () => {
    const c = await TestClient.connect(h.app.portOf('default'));
    await c.cmd('EHLO x');
    const r = await c.cmd('MAIL FROM:<a@example.org> SIZE=2000000');
    expect(r.code).toBe(552);
    await c.quit();
  });

  it('8-bit header bytes pass by default and are reported in the log', async () => {
    const r = await send(Buffer.from(`From: J\xc3\xb6rg <a@example.org>\r\nSubject: gr\xc3\xbc\xc3\x9fe\r\n\r\nx\r\n`, 'latin1'));
    expect(r.final?.code).toBe(250);
    expect(sink.received[0].data.toString('latin1')).toContain('Subject: gr\xc3\xbc\xc3\x9fe');
    const line = h.logs.find((l) => l.msg === 'message');
    expect(line?.findings).toEqual(expect.arrayContaining([expect.stringMatching(/^HEADER_SANITY_EIGHT_BIT_HEADER/)]));
  });

  it('a client that disconnects mid-DATA leaves no message and no spool file', async () => {
    const c = await TestClient.connect(h.app.portOf('default'));
    await c.cmd('EHLO x');
    await c.cmd('MAIL FROM:<a@example.org>');
    await c.cmd('RCPT TO:<b@example.net>');
    await c.cmd('DATA');
    c.write(`${head}${'y'.repeat(200_000)}`);
    await new Promise((r) => setTimeout(r, 100));
    c.socket.destroy();
    await waitFor(() => h.logs.some((l) => l.msg === 'message'));
    expect(sink.received).toHaveLength(0);
    expect(h.logs.find((l) => l.msg === 'message')?.reply).toMatch(/^451 4\.3\.0/);
  });

  it('200 concurrent connections are all served', async () => {
    const results = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const c = await TestClient.connect(h.app.portOf('default'));
        const r = await c.send({ from: 'a@example.org', to: [`u${i}@example.net`], data: `${head}message ${i}\r\n` });
        await c.quit();
        return r.final?.code;
      }),
    );
    expect(results.every((code) => code === 250)).toBe(true);
    expect(sink.received).toHaveLength(200);
  });
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('a 5 MB single line under the size limit', () => {
  it('is delivered unchanged and reported as HEADER_SANITY_LONG_BODY_LINE', async () => {
    const sink = await startSink();
    const h = await startHarness({ forwardPort: sink.port });
    const c = await TestClient.connect(h.app.portOf('default'));
    const line = 'z'.repeat(5 * 1024 * 1024);
    const r = await c.send({ from: 'a@example.org', to: ['b@example.net'], data: `${head}${line}\r\n` });
    await c.quit();
    await h.close();
    await sink.close();
    expect(r.final?.code).toBe(250);
    expect(sink.received[0].data.toString().endsWith(`\r\n\r\n${line}\r\n`)).toBe(true);
    expect(h.logs.find((l) => l.msg === 'message')?.findings).toEqual(expect.arrayContaining([expect.stringMatching(/^HEADER_SANITY_LONG_BODY_LINE/)]));
    expect(h.spoolFiles()).toEqual([]);
  });
});
