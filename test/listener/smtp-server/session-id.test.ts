import { SMTPServer } from 'smtp-server';
import { sessionIdsWithoutRandomCalls } from '../../../src/listener/smtp-server/session-id';
import { startHarness } from '../../helpers/postseal';
import { startSink } from '../../helpers/sink';
import { TestClient } from '../../helpers/smtp-client';

const msg = 'From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n';
/** smtp-server's own form: 16 lowercase base32 digits. */
const SESSION_ID = /^[0-9a-v]{16}$/;

describe('session ids', () => {
  it('every connection to a listener gets its own id: the listener’s random prefix and a counter, in smtp-server’s form', async () => {
    const sink = await startSink();
    const h = await startHarness({ forwardPort: sink.port });
    for (let i = 0; i < 5; i++) {
      const c = await TestClient.connect(h.app.portOf('default'));
      expect((await c.send({ from: 'a@example.org', to: ['b@example.net'], data: msg })).final?.code).toBe(250);
      await c.quit();
    }
    await h.close();
    await sink.close();
    const ids = h.logs.filter((l) => l.msg === 'message').map((l) => String(l.session).split('.')[0]);
    expect(ids).toHaveLength(5);
    for (const id of ids) expect(id).toMatch(SESSION_ID);
    // smtp-server's own ids are 80 random bits each: they would not share a prefix.
    expect(new Set(ids.map((id) => id.slice(0, 8))).size).toBe(1);
    expect(ids.map((id) => parseInt(id.slice(8), 32))).toEqual([1, 2, 3, 4, 5]);
  });

  it('a server that expects the PROXY header keeps smtp-server’s own handling', () => {
    const s = new SMTPServer({ logger: false, useProxy: true });
    sessionIdsWithoutRandomCalls(s);
    expect(s._handleProxy).toBe(SMTPServer.prototype._handleProxy);
  });
});
