import net, { type AddressInfo } from 'node:net';
import { loadConfig } from '../../../src/setup';
import { PROBE_CACHE_MS, createReadiness } from '../../../src/services/metrics/readiness';
import { writeConfig } from '../../helpers/metrics';
import { freePort, startRedisServer } from '../../helpers/redis-server';

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

  it('names a Redis store that does not answer PING (down, or a database it does not have), and is ready once it does', async () => {
    const server = await tcpServer();
    const port = (server.address() as AddressInfo).port;
    const redis = await startRedisServer();
    const withUrl = (url: string) =>
      loadConfig(writeConfig({ default: { forward: { host: '127.0.0.1', port } } }, { store: { backend: 'redis', redis: { url, timeoutMs: 1000 } } }));
    try {
      const ready = (url: string) => createReadiness({ listenersDown: () => null, config: () => withUrl(url) }).check();
      expect(await ready(redis.url)).toBeNull();
      expect(await ready(`redis://127.0.0.1:${redis.port}/16`)).toBe(`store: Redis at redis://127.0.0.1:${redis.port}/16 did not answer PING (ERR DB index is out of range)`);
      await redis.kill();
      expect(await ready(redis.url)).toBe(`store: Redis at ${redis.url} did not answer PING (connect ECONNREFUSED 127.0.0.1:${redis.port})`);
    } finally {
      await redis.stop();
      await new Promise((r) => server.close(r));
    }
  });

  it('names a Redis store without its password, in the URL or in its query (ioredis reads ?password=)', async () => {
    const server = await tcpServer();
    const port = (server.address() as AddressInfo).port;
    const down = await freePort();
    try {
      for (const url of [`redis://:sekret@127.0.0.1:${down}/0`, `redis://127.0.0.1:${down}/0?password=sekret`]) {
        const config = loadConfig(writeConfig({ default: { forward: { host: '127.0.0.1', port } } }, { store: { backend: 'redis', redis: { url, timeoutMs: 1000 } } }));
        const reason = await createReadiness({ listenersDown: () => null, config: () => config }).check();
        expect(reason).toMatch(/^store: Redis at redis:\/\/.*\*\*\*.* did not answer PING \(connect ECONNREFUSED/);
        expect(reason).not.toContain('sekret');
      }
    } finally {
      await new Promise((r) => server.close(r));
    }
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
