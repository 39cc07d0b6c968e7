import net from 'node:net';
import { SMTPServer } from 'smtp-server';
import { greetWithoutPause } from '../../../src/listener/smtp-server/greeting';
import { startHarness } from '../../helpers/postseal';
import { startSink } from '../../helpers/sink';

/** Milliseconds from connect to the greeting, and everything the server sent in `watchMs`. */
async function greeting(port: number, watchMs: number): Promise<{ ms: number; text: string }> {
  const socket = net.connect(port, '127.0.0.1');
  const started = performance.now();
  let text = '';
  let ms = -1;
  socket.on('data', (d) => {
    if (ms < 0) ms = performance.now() - started;
    text += d.toString('latin1');
  });
  await new Promise((r) => setTimeout(r, watchMs));
  socket.end('QUIT\r\n');
  return { ms, text };
}

async function server(patched: boolean): Promise<SMTPServer> {
  const s = new SMTPServer({ logger: false, disableReverseLookup: true, authOptional: true, disabledCommands: ['AUTH', 'STARTTLS'] });
  if (patched) greetWithoutPause(s);
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  return s;
}

const portOf = (s: SMTPServer) => (s.server.address() as net.AddressInfo).port;
// Well under smtp-server's 100 ms pause, with room for a busy test machine.
const AT_ONCE_MS = 80;

describe('greeting without smtp-server pause', () => {
  it('smtp-server alone still waits 100 ms before it greets (remove greeting.ts once this fails)', async () => {
    const s = await server(false);
    expect((await greeting(portOf(s), 300)).ms).toBeGreaterThanOrEqual(95);
    await new Promise<void>((r) => s.close(() => r()));
  });

  it('greets at once, and only once, with the pause left to run out', async () => {
    const s = await server(true);
    const g = await greeting(portOf(s), 300);
    expect(g.ms).toBeGreaterThanOrEqual(0);
    expect(g.ms).toBeLessThan(AT_ONCE_MS);
    expect(g.text.match(/^220 /gm)).toHaveLength(1);
    await new Promise<void>((r) => s.close(() => r()));
  });

  it('a postseal listener greets at once and takes mail on that connection', async () => {
    const sink = await startSink();
    const h = await startHarness({ forwardPort: sink.port });
    const port = h.app.portOf('default');
    expect((await greeting(port, 150)).ms).toBeLessThan(AT_ONCE_MS);
    const c = net.connect(port, '127.0.0.1');
    let text = '';
    c.on('data', (d) => (text += d.toString('latin1')));
    // Commands sent right after the greeting are answered, not refused as early talking.
    await new Promise((r) => c.once('data', r));
    c.write('EHLO client.example\r\nQUIT\r\n');
    await new Promise((r) => c.once('close', r));
    expect(text).toMatch(/^220 [^\n]*\n250-[^\n]*\n(250-[^\n]*\n)*250 [^\n]*\n221 /);
    await h.close();
    await sink.close();
  });
});
