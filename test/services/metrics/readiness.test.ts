import net, { type AddressInfo } from 'node:net';
import { loadConfig } from '../../../src/setup';
import { PROBE_CACHE_MS, createReadiness } from '../../../src/services/metrics/readiness';
import { writeConfig } from '../../helpers/metrics';

async function tcpServer(): Promise<net.Server> {
  const s = net.createServer((sock) => sock.end());
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', () => resolve()));
  return s;
}

describe('the readiness check', () => {
  it('keeps a probe result for PROBE_CACHE_MS, then probes the forward target again', async () => {
    const server = await tcpServer();
    const port = (server.address() as AddressInfo).port;
    const config = loadConfig(writeConfig({ default: { forward: { host: '127.0.0.1', port } } }));
    let now = 1000;
    const readiness = createReadiness({ listenersDown: () => null, config: () => config, now: () => now });
    expect(await readiness.check()).toBeNull();
    await new Promise((r) => server.close(r));
    now += PROBE_CACHE_MS - 1;
    expect(await readiness.check()).toBeNull();
    now += 1;
    expect(await readiness.check()).toMatch(new RegExp(`^bank default: forward target 127.0.0.1:${port} refused the connection \\(ECONNREFUSED\\)$`));
  });

  it('names the listeners first, without probing, when they are not serving', async () => {
    const config = loadConfig(writeConfig({ default: { forward: { host: '127.0.0.1', port: 1 } } }));
    const readiness = createReadiness({ listenersDown: () => 'the SMTP listeners are draining', config: () => config });
    expect(await readiness.check()).toBe('the SMTP listeners are draining');
  });

  it('probes each target once and lists every bank that forwards to a refusing one', async () => {
    const server = await tcpServer();
    const up = (server.address() as AddressInfo).port;
    const closed = await tcpServer();
    const down = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const config = loadConfig(
      writeConfig({ default: { forward: { host: '127.0.0.1', port: up } }, a: { forward: { host: '127.0.0.1', port: down } }, b: { forward: { host: '127.0.0.1', port: down } } }),
    );
    try {
      expect(await createReadiness({ listenersDown: () => null, config: () => config }).check()).toBe(
        `bank a, b: forward target 127.0.0.1:${down} refused the connection (ECONNREFUSED)`,
      );
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
