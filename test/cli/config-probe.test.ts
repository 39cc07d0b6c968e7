import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runCliAsync } from '../helpers/key-config';
import { startScriptedServer } from '../helpers/scripted-server';
import { startSink } from '../helpers/sink';

async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** default forwards to `a`, OTHER to `b`. */
function config(a: number, b: number): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'postseal-probe-'));
  mkdirSync(path.join(dir, 'banks'));
  writeFileSync(path.join(dir, 'banks', 'default.yaml'), `forward: { host: 127.0.0.1, port: ${a} }\n`);
  writeFileSync(path.join(dir, 'banks', 'OTHER.yaml'), `forward: { port: ${b} }\n`);
  writeFileSync(path.join(dir, 'postseal.yaml'), 'bankDir: banks\nlisteners:\n  - { port: 0, bank: default }\n  - { port: 0, bank: OTHER }\n');
  return path.join(dir, 'postseal.yaml');
}

describe('postseal config check --probe', () => {
  it('warns about a forward target where nothing listens, names its bank, and still exits 0', async () => {
    const sink = await startSink();
    const closed = await closedPort();
    const r = await runCliAsync(['config', 'check', '--probe', '--config', config(sink.port, closed)]);
    await sink.close();
    expect(r.status).toBe(0);
    expect(r.stderr).toContain('postseal: warning CFG_FORWARD_NOT_ANSWERING');
    expect(r.stderr).toContain(`forward target 127.0.0.1:${closed} of bank OTHER: ECONNREFUSED`);
    expect(r.stderr).not.toContain(`127.0.0.1:${sink.port}`);
  });

  it('warns about a target that greets with something other than 220', async () => {
    const sink = await startSink();
    const refusing = await startScriptedServer({ GREETING: '554 5.3.2 not now' });
    const r = await runCliAsync(['config', 'check', '--probe', '--config', config(sink.port, refusing.port)]);
    await sink.close();
    await refusing.close();
    expect(r.stderr).toContain(`forward target 127.0.0.1:${refusing.port} of bank OTHER: greeted with "554 5.3.2 not now", not 220`);
  });

  it('without --probe no connection is tried', async () => {
    const closed = await closedPort();
    const r = await runCliAsync(['config', 'check', '--config', config(closed, closed)]);
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('');
  });
});
