import { SMTPServer } from 'smtp-server';
import { nextSessionId, sessionIdsWithoutRandomCalls } from '../../src/listener/session-id';
import { startHarness } from '../helpers/postseal';
import { startSink } from '../helpers/sink';
import { TestClient } from '../helpers/smtp-client';

const msg = 'From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n';
/** smtp-server's own form: 16 lowercase base32 digits. */
const SESSION_ID = /^[0-9a-v]{16}$/;

describe('session ids', () => {
  it('every connection to a listener gets its own id, in the form of smtp-server’s, logged with its message', async () => {
    const sink = await startSink();
    const h = await startHarness({ forwardPort: sink.port });
    for (let i = 0; i < 5; i++) {
      const c = await TestClient.connect(h.app.portOf('default'));
      expect((await c.send({ from: 'a@example.org', to: ['b@example.net'], data: msg })).final?.code).toBe(250);
      await c.quit();
    }
    await h.close();
    await sink.close();
    const sessions = h.logs.filter((l) => l.msg === 'message').map((l) => String(l.session).split('.')[0]);
    expect(sessions).toHaveLength(5);
    expect(new Set(sessions).size).toBe(5);
    for (const id of sessions) expect(id).toMatch(SESSION_ID);
  });

  it('ids share the process’s random prefix and differ in the counter', () => {
    const a = nextSessionId();
    const b = nextSessionId();
    expect(a).toMatch(SESSION_ID);
    expect(b.slice(0, 8)).toBe(a.slice(0, 8));
    expect(b).not.toBe(a);
  });

  it('a server that expects the PROXY header keeps smtp-server’s own handling', () => {
    const s = new SMTPServer({ logger: false, useProxy: true });
    sessionIdsWithoutRandomCalls(s);
    expect(s._handleProxy).toBe(SMTPServer.prototype._handleProxy);
  });
});
