import { startHarness } from '../helpers/postseal';
import { startScriptedServer } from '../helpers/scripted-server';
import { TestClient } from '../helpers/smtp-client';

const msg = 'From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n';

async function sendThrough(xforwardReply: string) {
  // Announces PIPELINING and XFORWARD, and answers XFORWARD only once MAIL has arrived too.
  const down = await startScriptedServer({ EHLO: '250-pipelining.test\r\n250-PIPELINING\r\n250 XFORWARD NAME ADDR HELO', XFORWARD: xforwardReply }, { holdRepliesUntil: 'MAIL' });
  const h = await startHarness({ forwardPort: down.port, banks: { default: { forward: { commandTimeoutMs: 1000 } } } });
  const c = await TestClient.connect(h.app.portOf('default'));
  const r = await c.send({ from: 'a@example.org', to: ['b@example.net'], data: msg, xforward: 'NAME=mx.example.org ADDR=192.0.2.7 HELO=mx.example.org' });
  await c.quit();
  await h.close();
  await down.close();
  return { r, commands: down.commands, logs: h.logs };
}

describe('XFORWARD to a downstream that offers PIPELINING', () => {
  it('goes in the same write as MAIL, and the message is delivered', async () => {
    const { r, commands } = await sendThrough('250 2.0.0 Ok');
    expect(r.final?.code).toBe(250);
    expect(commands.slice(1, 3)).toEqual(['XFORWARD NAME=mx.example.org ADDR=192.0.2.7 HELO=mx.example.org', 'MAIL FROM:<a@example.org>']);
  });

  it('refused, it only loses the client details: the mail still goes', async () => {
    const { r, logs } = await sendThrough('550 5.7.0 not authorized');
    expect(r.mail.code).toBe(250);
    expect(r.final?.code).toBe(250);
    // Not silently: the postmaster learns the reinjection smtpd does not believe postseal.
    expect(logs.find((l) => String(l.msg).startsWith('the downstream refused XFORWARD'))).toMatchObject({ reply: '550 5.7.0 not authorized' });
  });
});

describe('MAIL to a downstream that offers PIPELINING', () => {
  it('goes in one write with XFORWARD and the first RCPT, the later RCPTs one each', async () => {
    // Answers XFORWARD and MAIL only once an RCPT has arrived: waiting for MAIL's reply would time out.
    const down = await startScriptedServer({ EHLO: '250-pipelining.test\r\n250-PIPELINING\r\n250 XFORWARD NAME ADDR HELO' }, { holdRepliesUntil: 'RCPT' });
    const h = await startHarness({ forwardPort: down.port, banks: { default: { forward: { commandTimeoutMs: 1000 } } } });
    const c = await TestClient.connect(h.app.portOf('default'));
    const r = await c.send({ from: 'a@example.org', to: ['b@example.net', 'c@example.net'], data: msg, xforward: 'NAME=mx.example.org ADDR=192.0.2.7 HELO=mx.example.org' });
    await c.quit();
    await h.close();
    await down.close();
    expect([r.mail.code, ...r.rcpts.map((x) => x.code), r.final?.code]).toEqual([250, 250, 250, 250]);
    expect(down.commands.slice(1, 6)).toEqual([
      'XFORWARD NAME=mx.example.org ADDR=192.0.2.7 HELO=mx.example.org',
      'MAIL FROM:<a@example.org>',
      'RCPT TO:<b@example.net>',
      'RCPT TO:<c@example.net>',
      'DATA',
    ]);
  });

  it('is not sent for a transaction that ends before any RCPT', async () => {
    const down = await startScriptedServer({});
    const h = await startHarness({ forwardPort: down.port });
    const c = await TestClient.connect(h.app.portOf('default'));
    await c.cmd('EHLO test.example');
    expect((await c.cmd('MAIL FROM:<a@example.org>')).code).toBe(250);
    expect((await c.cmd('RSET')).code).toBe(250);
    const r = await c.send({ from: 'b@example.org', to: ['d@example.net'], data: msg });
    await c.quit();
    await h.close();
    await down.close();
    expect(r.final?.code).toBe(250);
    expect(down.commands.filter((l) => l.startsWith('MAIL'))).toEqual(['MAIL FROM:<b@example.org>']);
  });
});
