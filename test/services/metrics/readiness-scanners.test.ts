import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createReadiness } from '../../../src/services/metrics/readiness';
import { loadConfig } from '../../../src/setup';
import { startClamd, type ClamdServer } from '../../helpers/clamd';
import { writeConfig } from '../../helpers/metrics';
import { startSink, type Sink } from '../../helpers/sink';

describe('the readiness check of the scanners a bank needs', () => {
  let clamd: ClamdServer;
  let sink: Sink;
  beforeAll(async () => {
    clamd = await startClamd();
    sink = await startSink();
  }, 30_000);
  afterAll(async () => {
    await clamd?.stop();
    await sink?.close();
  });

  const configWith = (virus: Record<string, unknown>) =>
    loadConfig(
      writeConfig({
        default: { forward: { host: '127.0.0.1', port: sink.port }, stages: ['virus'], virus },
        other: { forward: { host: '127.0.0.1', port: sink.port }, stages: ['loop-guard'] },
      }),
    );

  it('is ready when clamd answers PING', async () => {
    const config = configWith({ socket: clamd.socket });
    expect(await createReadiness({ listenersDown: () => null, config: () => config }).check()).toBeNull();
  });

  it('names the bank that lists the stage and the clamd that does not answer', async () => {
    const socket = path.join(mkdtempSync(path.join(tmpdir(), 'postseal-noclamd-')), 'clamd.sock');
    const config = configWith({ socket });
    expect(await createReadiness({ listenersDown: () => null, config: () => config }).check()).toBe(
      `bank default: clamd at unix:${socket} did not answer PING (unreachable: cannot connect: ENOENT)`,
    );
  });

  it('sees clamd go away once the cached answer is old', async () => {
    const config = configWith({ host: '127.0.0.1', port: clamd.port });
    let now = 0;
    const readiness = createReadiness({ listenersDown: () => null, config: () => config, now: () => now });
    expect(await readiness.check()).toBeNull();
    await clamd.kill();
    try {
      now += 60_000;
      expect(await readiness.check()).toMatch(
        new RegExp(`^bank default: clamd at 127\\.0\\.0\\.1:${clamd.port} did not answer PING \\(unreachable: cannot connect: ECONNREFUSED\\)$`),
      );
    } finally {
      await clamd.restart();
    }
  });
});
