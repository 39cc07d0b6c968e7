import { startSink } from '../helpers/sink';
import { startHarness } from '../helpers/postseal';
import { TestClient } from '../helpers/smtp-client';

const msg = 'From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n';

describe('XFORWARD', () => {
  it('attributes from a trusted peer are passed on to the downstream', async () => {
    const sink = await startSink();
    const h = await startHarness({ forwardPort: sink.port });
    const c = await TestClient.connect(h.app.portOf('default'));
    const r = await c.send({
      from: 'a@example.org',
      to: ['b@example.net'],
      data: msg,
      xforward: 'NAME=mx.example.org ADDR=192.0.2.7 PORT=4711 PROTO=ESMTP HELO=mx.example.org IDENT=4ABCD SOURCE=REMOTE',
    });
    await c.quit();
    await h.close();
    await sink.close();
    expect(r.final?.code).toBe(250);
    expect(sink.received[0].xforward).toMatchObject({ ADDR: '192.0.2.7', NAME: 'mx.example.org', HELO: 'mx.example.org', IDENT: '4ABCD', SOURCE: 'REMOTE', PROTO: 'ESMTP' });
    const line = h.logs.find((l) => l.msg === 'message');
    expect(line).toMatchObject({ client: '192.0.2.7', queueId: '4ABCD' });
  });

  it('attributes from a peer outside xforwardTrustedNetworks are ignored', async () => {
    const sink = await startSink();
    const h = await startHarness({ forwardPort: sink.port, main: { xforwardTrustedNetworks: ['10.9.9.0/24'] } });
    const c = await TestClient.connect(h.app.portOf('default'));
    const r = await c.send({ from: 'a@example.org', to: ['b@example.net'], data: msg, xforward: 'ADDR=192.0.2.7' });
    await c.quit();
    await h.close();
    await sink.close();
    expect(r.final?.code).toBe(250);
    expect(sink.received[0].xforward.ADDR).toBeUndefined();
    expect(h.logs.some((l) => l.msg === 'XFORWARD from an untrusted peer ignored')).toBe(true);
  });
});

describe('LMTP', () => {
  it('each recipient gets the downstream reply for that recipient', async () => {
    const sink = await startSink({ lmtp: true });
    sink.behaviour = { lmtpRcptReply: { 'full@example.net': [452, '4.2.2 mailbox full'] } };
    const h = await startHarness({ forwardPort: sink.port, banks: { default: { forward: { protocol: 'lmtp' } } }, listeners: [{ bank: 'default', protocol: 'lmtp' }] });
    const c = await TestClient.connect(h.app.portOf('default'));
    await c.cmd('LHLO x');
    await c.cmd('MAIL FROM:<a@example.org>');
    await c.cmd('RCPT TO:<ok@example.net>');
    await c.cmd('RCPT TO:<full@example.net>');
    await c.cmd('DATA');
    c.write(`${msg}.\r\n`);
    const first = await c.read();
    const second = await c.read();
    await c.quit();
    await h.close();
    await sink.close();
    expect(first.code).toBe(250);
    expect(second.code).toBe(452);
    expect(second.text).toBe('4.2.2 mailbox full');
  });
});
