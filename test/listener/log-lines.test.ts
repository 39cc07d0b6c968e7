/**
 * The log lines a postmaster reads: one per message with each key once, and expected
 * downstream failures as a code and a sentence, without stack traces or repeated text.
 */
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { errorFields } from '../../src/lib/log';
import { startHarness } from '../helpers/postseal';
import { startSink } from '../helpers/sink';
import { TestClient } from '../helpers/smtp-client';

async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

describe('log lines', () => {
  it('the per-message line names the bank once', async () => {
    const sink = await startSink();
    const h = await startHarness({ forwardPort: sink.port });
    const c = await TestClient.connect(h.app.portOf('default'));
    await c.send({ from: 'a@example.org', to: ['b@example.net'], data: 'From: a@example.org\r\n\r\nx\r\n' });
    await c.quit();
    await h.close();
    await sink.close();
    const line = h.logLines.find((l) => l.includes('"msg":"message"'))!;
    expect(line.match(/"bank":/g)).toHaveLength(1);
    expect(JSON.parse(line)).toMatchObject({ bank: 'default', verdict: 'pass' });
  });

  it('a refused downstream connection is logged with its code and message, no stack trace', async () => {
    const h = await startHarness({ forwardPort: await closedPort() });
    const c = await TestClient.connect(h.app.portOf('default'));
    await c.cmd('EHLO x');
    expect((await c.cmd('MAIL FROM:<a@example.org>')).code).toBe(250);
    const r = await c.cmd('RCPT TO:<b@example.net>');
    // Said once: the second recipient gets the same answer without another attempt.
    expect((await c.cmd('RCPT TO:<c@example.net>')).code).toBe(451);
    await c.quit();
    await h.close();
    expect(r.code).toBe(451);
    expect(r.text).toMatch(/^4\.4\.1 /);
    const line = h.logLines.find((l) => l.includes('downstream MAIL failed'))!;
    expect(JSON.parse(line)).toMatchObject({ code: 'REINJECT_REFUSED', error: expect.stringMatching(/ECONNREFUSED/) });
    expect(line).not.toMatch(/"stack"|\\n {4}at /);
    expect(line.match(/ECONNREFUSED/g)).toHaveLength(1);
    expect(h.logLines.filter((l) => l.includes('downstream MAIL failed'))).toHaveLength(1);
  });

  it('the downstream-failure line carries the session, the bank and the queue id Postfix sent in XFORWARD IDENT', async () => {
    const h = await startHarness({ forwardPort: await closedPort() });
    const c = await TestClient.connect(h.app.portOf('default'));
    await c.cmd('EHLO x');
    await c.cmd('XFORWARD ADDR=192.0.2.7 IDENT=4QXYZ12');
    expect((await c.cmd('MAIL FROM:<a@example.org>')).code).toBe(250);
    expect((await c.cmd('RCPT TO:<b@example.net>')).code).toBe(451);
    await c.quit();
    await h.close();
    const line = JSON.parse(h.logLines.find((l) => l.includes('downstream MAIL failed'))!);
    expect(line).toMatchObject({ bank: 'default', queueId: '4QXYZ12', session: expect.any(String), code: 'REINJECT_REFUSED' });
  });

  it('a refused MAIL command is logged with the session, the bank and the queue id', async () => {
    const sink = await startSink();
    const h = await startHarness({ forwardPort: sink.port });
    const c = await TestClient.connect(h.app.portOf('default'));
    await c.cmd('EHLO x');
    await c.cmd('XFORWARD IDENT=4QXYZ13');
    const r = await c.cmd('MAIL FROM:<a@example.org> FOO=bar');
    await c.quit();
    await h.close();
    await sink.close();
    expect(r.code).toBeGreaterThanOrEqual(500);
    const line = JSON.parse(h.logLines.find((l) => l.includes('"MAIL refused"'))!);
    expect(line).toMatchObject({ bank: 'default', queueId: '4QXYZ13', session: expect.any(String) });
  });
});

describe('errorFields', () => {
  it("a peer's network error is its errno and message, without a stack trace", () => {
    const err = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
    expect(errorFields(err)).toEqual({ errno: 'ECONNREFUSED', error: 'connect ECONNREFUSED 127.0.0.1:1' });
  });

  it('an unexpected error keeps its full serialisation', () => {
    const err = new TypeError('x is not a function');
    expect(errorFields(err)).toEqual({ err });
  });
});
