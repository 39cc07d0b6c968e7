import { createHash } from 'node:crypto';
import { startDnsServer } from '../helpers/dns-server';
import { startHarness } from '../helpers/postseal';
import { startScriptedServer, type Script } from '../helpers/scripted-server';
import { TestClient } from '../helpers/smtp-client';

const msg = 'From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n';

async function through(script: Script) {
  const down = await startScriptedServer(script);
  const h = await startHarness({ forwardPort: down.port, banks: { default: { forward: { commandTimeoutMs: 1000 } } } });
  const c = await TestClient.connect(h.app.portOf('default'));
  const r = await c.send({ from: 'a@example.org', to: ['b@example.net'], data: msg });
  await c.quit();
  await h.close();
  await down.close();
  return { r, commands: down.commands };
}

describe('downstream replies that smtp-server cannot give', () => {
  it('a 4xx to the DATA command is passed up after the message, not 250', async () => {
    const { r, commands } = await through({ DATA: '451 4.3.0 not now' });
    expect(r.final?.code).toBe(451);
    expect(r.final?.text).toBe('4.3.0 not now');
    expect(commands).toContain('RSET');
  });

  it('a 5xx to the DATA command is passed up as 5xx', async () => {
    const { r } = await through({ DATA: '554 5.5.1 no valid recipients' });
    expect(r.final?.code).toBe(554);
  });

  it('garbage instead of a reply is a 451 4.4.0', async () => {
    const { r } = await through({ MAIL: 'hello there' });
    expect(r.rcpts[0].code).toBe(451);
    expect(r.rcpts[0].text).toMatch(/^4\.4\.0 /);
  });

  it('a non-220 greeting is a 451, never an accepted message', async () => {
    const { r } = await through({ GREETING: '554 5.3.2 go away' });
    expect(r.rcpts[0].code).toBe(451);
  });

  it('XFORWARD is sent only with the attributes the downstream announced', async () => {
    const down = await startScriptedServer({ EHLO: '250-scripted\r\n250 XFORWARD ADDR HELO' });
    const h = await startHarness({ forwardPort: down.port });
    const c = await TestClient.connect(h.app.portOf('default'));
    await c.send({ from: 'a@example.org', to: ['b@example.net'], data: msg, xforward: 'NAME=mx.example.org ADDR=2001:db8::7 HELO=mx.example.org' });
    await c.quit();
    await h.close();
    await down.close();
    expect(down.commands).toContain('XFORWARD ADDR=IPV6:2001:db8::7 HELO=mx.example.org');
  });
});

describe('the recipient limit', () => {
  it('answers 452 4.5.3 for recipients over maxRecipients', async () => {
    const down = await startScriptedServer({});
    const h = await startHarness({ forwardPort: down.port, banks: { default: { maxRecipients: 2 } } });
    const c = await TestClient.connect(h.app.portOf('default'));
    const r = await c.send({ from: 'a@example.org', to: ['a@x.org', 'b@x.org', 'c@x.org'], data: msg });
    await c.quit();
    await h.close();
    await down.close();
    expect(r.rcpts.map((x) => x.code)).toEqual([250, 250, 452]);
    expect(r.rcpts[2].text).toMatch(/^4\.5\.3 /);
    expect(r.final?.code).toBe(250);
  });
});

describe('replies that must never count as acceptance', () => {
  it('a 2xx to the DATA command is a broken downstream: 451 4.4.0, never 250 for a message not sent', async () => {
    const { r, commands } = await through({ DATA: '250 2.0.0 sure' });
    expect(r.final?.code).toBe(451);
    expect(r.final?.text).toMatch(/^4\.4\.0 .*answered DATA with 250/);
    expect(commands.filter((c) => c === '.')).toEqual([]);
  });

  it('an LMTP server that goes away after answering the first recipient: that one keeps its 250, the second gets 451', async () => {
    const down = await startScriptedServer({ EHLO: '250-scripted\r\n250 PIPELINING', DOT: '250 2.1.5 delivered to first' }, { closeAfterDot: true });
    const h = await startHarness({
      forwardPort: down.port,
      banks: { default: { forward: { protocol: 'lmtp', commandTimeoutMs: 1000 } } },
      listeners: [{ bank: 'default', protocol: 'lmtp' }],
    });
    const c = await TestClient.connect(h.app.portOf('default'));
    await c.cmd('LHLO x');
    await c.cmd('MAIL FROM:<a@example.org>');
    await c.cmd('RCPT TO:<first@example.net>');
    await c.cmd('RCPT TO:<second@example.net>');
    await c.cmd('DATA');
    c.write(`${msg}.\r\n`);
    const replies = [await c.read(), await c.read()];
    await c.quit();
    await h.close();
    await down.close();
    expect(replies.map((x) => x.code)).toEqual([250, 451]);
    expect(replies[0].text).toBe('2.1.5 delivered to first');
    expect(replies[1].text).toMatch(/^4\.4\.0 /);
  });
});

describe('a client that disconnects after its final dot', () => {
  it('gets nothing sent downstream when it is gone before the checks finish (Postfix retries; no duplicate)', async () => {
    const dns = await startDnsServer({ 'slow._domainkey.example.org': { behaviour: 'timeout' } });
    const down = await startScriptedServer({});
    const h = await startHarness({
      forwardPort: down.port,
      banks: { default: { stages: ['dkim-verify'] } },
      main: { dns: { servers: [dns.server], timeoutMs: 400, retries: 0 } },
    });
    const body = 'body\r\n';
    const bh = createHash('sha256').update(body).digest('base64');
    // A well-formed signature with the right body hash, so its key is looked up: the check takes 400 ms.
    const sig = `DKIM-Signature: v=1; a=rsa-sha256; c=simple/simple; d=example.org; s=slow; h=from; bh=${bh}; b=AAAA\r\n`;
    const c = await TestClient.connect(h.app.portOf('default'));
    await c.cmd('EHLO x');
    await c.cmd('MAIL FROM:<a@example.org>');
    await c.cmd('RCPT TO:<b@example.net>');
    await c.cmd('DATA');
    c.write(`${sig}From: a@example.org\r\n\r\n${body}.\r\n`);
    c.socket.destroy();
    await waitFor(() => h.logs.some((l) => l.msg === 'message'));
    await h.close();
    await down.close();
    await dns.close();
    expect(down.commands).not.toContain('DATA');
    expect(h.logs.find((l) => l.msg === 'message')).toMatchObject({ code: 'UPSTREAM_ABORTED' });
  });
});

async function waitFor(check: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}
