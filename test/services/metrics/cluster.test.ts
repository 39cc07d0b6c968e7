import { eventually, get, sample, scrape, sendMail, startMetricsDaemon, stopDaemons, writeConfig } from '../../helpers/metrics';
import { startSink, type Sink } from '../../helpers/sink';

jest.setTimeout(60000);

let sink: Sink | undefined;
afterEach(async () => {
  stopDaemons();
  await sink?.close();
});

describe('metrics of postseal start with two workers', () => {
  it('serves from the primary the messages of both workers summed', async () => {
    sink = await startSink();
    const p = await startMetricsDaemon(writeConfig({ default: { forward: { host: '127.0.0.1', port: sink.port } } }, { workers: 2 }));
    const workers = new Set(
      (
        await eventually(
          async () => p.d.lines.filter((l) => l.msg === 'worker started'),
          (l) => l.length >= 2,
        )
      ).map((l) => l.pid),
    );
    expect(workers.size).toBe(2);
    const sent = 12;
    // Concurrent connections, so that the kernel hands some to each worker.
    const codes = await Promise.all(Array.from({ length: sent }, () => sendMail(p.smtpPort.default)));
    expect(codes).toEqual(Array(sent).fill(250));
    // Both workers took mail, so the sum below is a sum over two registries.
    const served = await eventually(
      async () => new Set(p.d.lines.filter((l) => l.msg === 'message').map((l) => l.worker)),
      (s) => s.size >= 2,
    );
    expect(served.size).toBe(2);
    const text = await scrape(p.metricsPort);
    expect(sample(text, 'postseal_messages_total', { bank: 'default', verdict: 'pass', reply: '2xx' })).toBe(sent);
    expect(sample(text, 'postseal_smtp_connections_total')).toBe(sent);
    expect(sample(text, 'postseal_message_duration_seconds_count', { bank: 'default' })).toBe(sent);
    // One HELP/TYPE per metric: the workers' series are merged, not listed twice.
    expect(text.match(/^# TYPE postseal_messages_total /gm)).toHaveLength(1);
    expect(
      await eventually(
        () => get(p.metricsPort, '/readyz'),
        (r) => r.status === 200,
      ),
    ).toMatchObject({ status: 200, body: 'ready\n' });
  });

  it('answers /readyz 503 while the workers drain', async () => {
    sink = await startSink();
    const p = await startMetricsDaemon(writeConfig({ default: { forward: { host: '127.0.0.1', port: sink.port } } }, { workers: 2, shutdownGraceMs: 3000 }));
    await eventually(
      async () => p.d.lines.filter((l) => l.msg === 'worker started'),
      (l) => l.length >= 2,
    );
    expect(
      (
        await eventually(
          () => get(p.metricsPort, '/readyz'),
          (r) => r.status === 200,
        )
      ).status,
    ).toBe(200);
    p.d.proc.kill('SIGTERM');
    await p.d.waitFor((l) => l.msg === 'draining' && l.worker === undefined);
    const r = await get(p.metricsPort, '/readyz').catch((err: Error) => ({ status: 0, body: err.message }));
    // Refused once the primary has closed it, 503 before that: never ready.
    expect(r.status === 503 || /ECONNREFUSED/.test(r.body)).toBe(true);
    expect(await p.d.exited).toBe(0);
  });
});
