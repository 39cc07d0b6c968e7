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
    expect(r.mail.code).toBe(451);
    expect(r.mail.text).toMatch(/^4\.4\.0 /);
  });

  it('a non-220 greeting is a 451, never an accepted message', async () => {
    const { r } = await through({ GREETING: '554 5.3.2 go away' });
    expect(r.mail.code).toBe(451);
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
