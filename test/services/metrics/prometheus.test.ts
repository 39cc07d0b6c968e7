import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { eventually, freePort, get, sendMail, startMetricsDaemon, stopDaemons, writeConfig } from '../../helpers/metrics';
import { startSink, type Sink } from '../../helpers/sink';

jest.setTimeout(90000);

let sink: Sink | undefined;
afterEach(async () => {
  stopDaemons();
  await sink?.close();
});

describe('a real Prometheus scraping postseal', () => {
  it('stores postseal_messages_total from the /metrics endpoint', async () => {
    sink = await startSink();
    const p = await startMetricsDaemon(writeConfig({ default: { forward: { host: '127.0.0.1', port: sink.port } } }));
    for (let i = 0; i < 2; i++) expect(await sendMail(p.smtpPort.default)).toBe(250);
    const dir = mkdtempSync(path.join(tmpdir(), 'postseal-prometheus-'));
    writeFileSync(
      path.join(dir, 'prometheus.yml'),
      `global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: postseal\n    static_configs:\n      - targets: ['127.0.0.1:${p.metricsPort}']\n`,
    );
    const webPort = await freePort();
    // A missing prometheus binary fails the test (spawn's ENOENT): apt-get install prometheus.
    const prom = spawn(
      'prometheus',
      [`--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${webPort}`],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    prom.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const spawnError = new Promise<never>((_, reject) => prom.once('error', reject));
    const exited = new Promise((resolve) => prom.once('exit', resolve));
    try {
      const query = async () => {
        const r = await get(webPort, `/api/v1/query?query=${encodeURIComponent('sum(postseal_messages_total{job="postseal"})')}`).catch(() => ({ status: 0, body: '' }));
        return r.status === 200 ? (JSON.parse(r.body) as { data: { result: { value: [number, string] }[] } }).data.result : [];
      };
      const result = await Promise.race([eventually(query, (r) => r.length > 0, 60000), spawnError]);
      expect(result.map((r) => r.value[1])).toEqual(['2']);
    } catch (err) {
      throw new Error(`${(err as Error).message}\nprometheus said: ${stderr.slice(-2000)}`);
    } finally {
      prom.kill('SIGTERM');
      await exited;
    }
  });
});
