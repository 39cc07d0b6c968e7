/**
 * For the metrics tests: `postseal start` as a process with services.metrics on port 0,
 * HTTP GETs of its endpoints, and a reader of the Prometheus text format's samples.
 */
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { startDaemon, type Daemon } from './cli';
import { TestClient } from './smtp-client';

export interface MetricsDaemon {
  d: Daemon;
  dir: string;
  configFile: string;
  metricsPort: number;
  /** SMTP port of each bank's listener. */
  smtpPort: Record<string, number>;
}

/** Every daemon started here, killed by stopDaemons() (call it in afterEach). */
const started: Daemon[] = [];
export function stopDaemons(): void {
  for (const d of started.splice(0)) if (d.proc.exitCode === null && d.proc.signalCode === null) d.proc.kill('SIGKILL');
}

/** Banks as YAML objects (each needs its forward); one listener per bank on port 0. */
export function writeConfig(
  banks: Record<string, Record<string, unknown>>,
  main: Record<string, unknown> = {},
  dir = mkdtempSync(path.join(tmpdir(), 'postseal-metrics-')),
): string {
  mkdirSync(path.join(dir, 'banks'), { recursive: true });
  for (const [name, body] of Object.entries(banks)) writeFileSync(path.join(dir, 'banks', `${name}.yaml`), YAML.stringify(body));
  const listeners = Object.keys(banks).map((bank) => ({ port: 0, bank }));
  const config = { bankDir: 'banks', listeners, shutdownGraceMs: 2000, workers: 1, services: { metrics: { enabled: true, port: 0 } }, ...main };
  writeFileSync(path.join(dir, 'postseal.yaml'), YAML.stringify(config));
  return path.join(dir, 'postseal.yaml');
}

export async function startMetricsDaemon(configFile: string): Promise<MetricsDaemon> {
  const d = startDaemon(configFile);
  started.push(d);
  const metricsLine = await d.waitFor((l) => l.msg === 'metrics listening');
  // A single process logs its listeners in 'postseal started', a cluster in each 'worker started'.
  const startedLine = await d.waitFor((l) => (l.msg === 'postseal started' || l.msg === 'worker started') && Array.isArray(l.listeners));
  const smtpPort: Record<string, number> = {};
  for (const spec of startedLine.listeners as string[]) {
    const [addr, bank] = spec.split('=');
    smtpPort[bank] = Number(addr.slice(addr.lastIndexOf(':') + 1));
  }
  return { d, dir: path.dirname(configFile), configFile, metricsPort: metricsLine.port as number, smtpPort };
}

export function get(port: number, urlPath: string): Promise<{ status: number; body: string; type: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: urlPath, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, type: String(res.headers['content-type']) }));
      })
      .on('error', reject);
  });
}

/** The sum of the samples of `name` whose labels include `labels`; undefined when none. */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  let sum: number | undefined;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = new Map([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) sum = (sum ?? 0) + Number(m[3]);
  }
  return sum;
}

export async function scrape(port: number): Promise<string> {
  const r = await get(port, '/metrics');
  if (r.status !== 200) throw new Error(`/metrics answered ${r.status}: ${r.body}`);
  return r.body;
}

/** Polls until `check` holds (the probe cache and the cluster make some values late). */
export async function eventually<T>(fn: () => Promise<T>, check: (v: T) => boolean, ms = 15000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (check(v) || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function sendMail(port: number, data = 'From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n', xforward?: string): Promise<number | undefined> {
  const c = await TestClient.connect(port);
  const r = await c.send({ from: 'a@example.org', to: ['b@example.net'], data, xforward });
  await c.quit();
  if (r.mail.code !== 250) return r.mail.code;
  return r.final?.code ?? r.rcpts[0]?.code;
}

export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', () => resolve()));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}
