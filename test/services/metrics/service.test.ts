import { execFileSync } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { PROBE_CACHE_MS } from '../../../src/services/metrics/readiness';
import { startDaemon } from '../../helpers/cli';
import { startDnsServer, type DnsServer } from '../../helpers/dns-server';
import { eventually, freePort, get, sample, scrape, sendMail, startMetricsDaemon, stopDaemons, writeConfig } from '../../helpers/metrics';
import { startSink, type Sink } from '../../helpers/sink';

jest.setTimeout(60000);

const sinks: Sink[] = [];
const dnsServers: DnsServer[] = [];
afterEach(async () => {
  stopDaemons();
  await Promise.all(sinks.splice(0).map((s) => s.close()));
  await Promise.all(dnsServers.splice(0).map((s) => s.close()));
});

async function sink(): Promise<Sink> {
  const s = await startSink();
  sinks.push(s);
  return s;
}

const noFrom = 'Subject: no author\r\n\r\nbody\r\n';

describe('postseal start with services.metrics enabled', () => {
  it('counts messages by bank, verdict and reply class, with stage, latency and size histograms', async () => {
    const s = await sink();
    const forward = { host: '127.0.0.1', port: s.port };
    const p = await startMetricsDaemon(writeConfig({ default: { forward }, strict: { forward, headerSanity: { missingFrom: 'reject' } } }));
    for (let i = 0; i < 3; i++) expect(await sendMail(p.smtpPort.default)).toBe(250);
    expect(await sendMail(p.smtpPort.strict, noFrom)).toBe(550);
    expect(await sendMail(p.smtpPort.strict)).toBe(250);
    const text = await scrape(p.metricsPort);
    expect(sample(text, 'postseal_messages_total', { bank: 'default', verdict: 'pass', reply: '2xx' })).toBe(3);
    expect(sample(text, 'postseal_messages_total', { bank: 'strict', verdict: 'reject', reply: '5xx' })).toBe(1);
    expect(sample(text, 'postseal_messages_total', { bank: 'strict', verdict: 'pass', reply: '2xx' })).toBe(1);
    expect(sample(text, 'postseal_messages_total')).toBe(5);
    expect(sample(text, 'postseal_findings_total', { stage: 'header-sanity', code: 'HEADER_SANITY_MISSING_FROM' })).toBe(1);
    expect(sample(text, 'postseal_stage_duration_seconds_count', { stage: 'loop-guard' })).toBe(5);
    expect(sample(text, 'postseal_stage_duration_seconds_count', { stage: 'header-sanity' })).toBe(5);
    expect(sample(text, 'postseal_message_duration_seconds_count', { bank: 'default' })).toBe(3);
    expect(sample(text, 'postseal_message_duration_seconds_bucket', { bank: 'default', le: '+Inf' })).toBe(3);
    expect(sample(text, 'postseal_message_size_bytes_sum', { bank: 'default' })).toBe(3 * 'From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n'.length);
    expect(sample(text, 'postseal_smtp_connections_total')).toBe(5);
    expect(sample(text, 'postseal_messages_in_flight')).toBe(0);
    expect(sample(text, 'postseal_downstream_failures_total')).toBe(0);
  });

  it('counts DNS lookups by type and result, and their latency, after an inbound SPF check', async () => {
    const s = await sink();
    const dns = await startDnsServer({ 'example.org': { TXT: ['v=spf1 ip4:192.0.2.1 -all'] } });
    dnsServers.push(dns);
    const p = await startMetricsDaemon(writeConfig({ default: { forward: { host: '127.0.0.1', port: s.port }, stages: ['spf'] } }, { dns: { servers: [dns.server] } }));
    // SPF checks the client Postfix names in XFORWARD (believed from loopback).
    const client = 'ADDR=192.0.2.1 NAME=mx.example.org HELO=mx.example.org';
    expect(await sendMail(p.smtpPort.default, undefined, client)).toBe(250);
    expect(await sendMail(p.smtpPort.default, undefined, client)).toBe(250);
    const text = await scrape(p.metricsPort);
    expect(sample(text, 'postseal_dns_lookups_total', { type: 'TXT', result: 'answer', cache: 'miss' })).toBe(1);
    expect(sample(text, 'postseal_dns_lookups_total', { type: 'TXT', result: 'answer', cache: 'hit' })).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'postseal_dns_lookup_duration_seconds_count', { type: 'TXT', result: 'answer' })).toBe(1);
    expect(sample(text, 'postseal_findings_total', { stage: 'spf', code: 'SPF_PASS' })).toBe(2);
    expect(sample(text, 'postseal_stage_duration_seconds_count', { stage: 'spf' })).toBe(2);
  });

  it('counts a refused downstream connection at MAIL and answers /readyz 503 until the downstream listens', async () => {
    const downPort = await freePort();
    const p = await startMetricsDaemon(writeConfig({ default: { forward: { host: '127.0.0.1', port: downPort } } }));
    const ready = await get(p.metricsPort, '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body).toContain(`forward target 127.0.0.1:${downPort} refused the connection`);
    expect(await sendMail(p.smtpPort.default)).toBe(451);
    const text = await scrape(p.metricsPort);
    expect(sample(text, 'postseal_downstream_failures_total', { kind: 'refused', step: 'mail' })).toBe(1);
    expect(sample(text, 'postseal_downstream_failures_total')).toBe(1);
    expect(sample(text, 'postseal_messages_total')).toBeUndefined();

    // The downstream comes back: a TCP server that greets on that port.
    // The probe connects and drops the connection: a reset here is no error of the test's.
    const back = net.createServer((sock) => sock.on('error', () => undefined).end('220 back\r\n'));
    await new Promise<void>((resolve) => back.listen(downPort, '127.0.0.1', () => resolve()));
    try {
      // The probe's result stands for PROBE_CACHE_MS, so this takes up to that long.
      const after = await eventually(
        () => get(p.metricsPort, '/readyz'),
        (r) => r.status === 200,
        PROBE_CACHE_MS + 5000,
      );
      expect(after).toMatchObject({ status: 200, body: 'ready\n' });
    } finally {
      await new Promise((r) => back.close(r));
    }
  });

  it('shows the message in flight while the downstream is silent, then counts a timeout at DATA', async () => {
    const s = await sink();
    s.behaviour.stall = 'data';
    const p = await startMetricsDaemon(writeConfig({ default: { forward: { host: '127.0.0.1', port: s.port, dataDoneTimeoutMs: 1500 } } }));
    const reply = sendMail(p.smtpPort.default);
    // While the downstream keeps it waiting, the message is in flight.
    const during = await eventually(
      () => scrape(p.metricsPort),
      (t) => sample(t, 'postseal_messages_in_flight') === 1,
      1400,
    );
    expect(sample(during, 'postseal_messages_in_flight')).toBe(1);
    expect(sample(during, 'postseal_smtp_connections')).toBe(1);
    expect(await reply).toBe(451);
    const text = await scrape(p.metricsPort);
    expect(sample(text, 'postseal_messages_in_flight')).toBe(0);
    expect(sample(text, 'postseal_downstream_failures_total', { kind: 'timeout', step: 'data' })).toBe(1);
    expect(sample(text, 'postseal_messages_total', { bank: 'default', verdict: 'pass', reply: '4xx' })).toBe(1);
  });

  it('answers /healthz, /readyz and 404 for other paths', async () => {
    const s = await sink();
    const p = await startMetricsDaemon(writeConfig({ default: { forward: { host: '127.0.0.1', port: s.port } } }));
    expect(await get(p.metricsPort, '/healthz')).toMatchObject({ status: 200, body: 'ok\n' });
    expect(await get(p.metricsPort, '/readyz')).toMatchObject({ status: 200, body: 'ready\n' });
    expect((await get(p.metricsPort, '/')).status).toBe(404);
    expect((await get(p.metricsPort, '/metrics')).type).toContain('text/plain; version=0.0.4');
  });

  it('writes metrics that promtool check metrics accepts', async () => {
    const s = await sink();
    const forward = { host: '127.0.0.1', port: s.port };
    const p = await startMetricsDaemon(writeConfig({ default: { forward }, strict: { forward, headerSanity: { missingFrom: 'reject' } } }));
    await sendMail(p.smtpPort.default);
    await sendMail(p.smtpPort.strict, noFrom);
    const text = await scrape(p.metricsPort);
    // promtool prints lint problems and exits 1 on any; a missing promtool throws ENOENT (apt-get install prometheus).
    const out = execFileSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(out).toBe('');
  });

  it('refuses to start, exit 1 with the address named, when the metrics port is taken', async () => {
    const s = await sink();
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', () => resolve()));
    const taken = (holder.address() as net.AddressInfo).port;
    try {
      const d = startDaemon(writeConfig({ default: { forward: { host: '127.0.0.1', port: s.port } } }, { services: { metrics: { enabled: true, port: taken } } }));
      let stderr = '';
      d.proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      expect(await d.exited).toBe(1);
      expect(stderr).toContain(`cannot listen for metrics on 127.0.0.1:${taken}`);
    } finally {
      await new Promise((r) => holder.close(r));
    }
  });

  it('moves the metrics listener to the new port on SIGHUP', async () => {
    const s = await sink();
    const first = await freePort();
    const banks = { default: { forward: { host: '127.0.0.1', port: s.port } } };
    const configFile = writeConfig(banks, { services: { metrics: { enabled: true, port: first } } });
    const p = await startMetricsDaemon(configFile);
    expect(p.metricsPort).toBe(first);
    const second = await freePort();
    writeConfig(banks, { services: { metrics: { enabled: true, port: second } } }, path.dirname(configFile));
    p.d.proc.kill('SIGHUP');
    await p.d.waitFor((l) => l.msg === 'metrics listening' && l.port === second);
    expect((await get(second, '/healthz')).status).toBe(200);
    await expect(get(first, '/healthz')).rejects.toThrow(/ECONNREFUSED/);
  });
});
