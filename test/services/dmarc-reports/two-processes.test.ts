/**
 * Two whole `postseal start` processes (the built dist/, as two hosts would run it) on one
 * real Redis: the mail each receives lands in the shared store, and the finished day that both
 * hosts recorded is reported once, with the counts of both, whichever process gets there first.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import pino from 'pino';
import YAML from 'yaml';
import { StoredDmarcResults, utcDay } from '../../../src/store/dmarc-results';
import { openRedisStore } from '../../../src/store/redis';
import { startDaemon, type Daemon } from '../../helpers/cli';
import { startDnsServer, type DnsServer } from '../../helpers/dns-server';
import { freePort, startRedisServer, type RedisServer } from '../../helpers/redis-server';
import { clearOfMidnight, dueDayTime } from '../../helpers/report-day';
import { startSink, type Sink } from '../../helpers/sink';
import { TestClient } from '../../helpers/smtp-client';

const log = pino({ level: 'silent' });
let redis: RedisServer;
let dns: DnsServer;
let sink: Sink;

beforeAll(async () => {
  redis = await startRedisServer();
  dns = await startDnsServer({ '_dmarc.a.test': { TXT: ['v=DMARC1; p=none; rua=mailto:agg@a.test'] } });
  sink = await startSink();
});
afterAll(async () => {
  await sink.close();
  await dns.close();
  await redis.stop();
});

/** One host's config: its own listener port, the shared Redis, reports through the sink. */
function hostConfig(port: number): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'dmarc-two-hosts-'));
  mkdirSync(path.join(dir, 'banks'));
  const bank = YAML.parse(readFileSync(path.join(__dirname, '../../../policy-banks/default.yaml'), 'utf8'));
  bank.forward = { protocol: 'smtp', host: '127.0.0.1', port: sink.port };
  bank.notify = { protocol: 'smtp', host: '127.0.0.1', port: sink.port };
  bank.stages = ['spf', 'dmarc'];
  writeFileSync(path.join(dir, 'banks', 'default.yaml'), YAML.stringify(bank));
  const main = {
    bankDir: 'banks',
    hostname: 'mx.receiver.test',
    listeners: [{ address: '127.0.0.1', port, bank: 'default' }],
    spool: { dir: mkdtempSync(path.join(tmpdir(), 'dmarc-two-hosts-spool-')) },
    dns: { servers: [dns.server], timeoutMs: 2000, retries: 0 },
    store: { backend: 'redis', keyPrefix: 'two-hosts:', redis: { url: redis.url, timeoutMs: 2000 } },
    services: { dmarcReports: { enabled: true, checkIntervalMs: 1000 } },
    // One process per host (no cluster): two hosts is the point, and CI has two cores.
    workers: 1,
  };
  writeFileSync(path.join(dir, 'postseal.yaml'), YAML.stringify(main));
  return path.join(dir, 'postseal.yaml');
}

test('two postseal processes on one Redis share the records and send one report per domain and day with the counts of both', async () => {
  const store = await openRedisStore({ url: redis.url, keyPrefix: 'two-hosts:', timeoutMs: 2000, log });
  const results = new StoredDmarcResults(store);
  await clearOfMidnight(20_000);
  const yesterday = dueDayTime();
  // A finished day's mail, as each host recorded it: four messages from one source, three from another.
  for (const [ip, n] of [
    ['192.0.2.1', 4],
    ['192.0.2.2', 3],
  ] as const) {
    for (let i = 0; i < n; i++) {
      await results.record({ receivedAt: yesterday, sourceIp: ip, headerFrom: 'a.test', policyDomain: 'a.test', policy: 'none', result: 'fail', disposition: 'none', dkim: [] });
    }
  }
  const hosts: Daemon[] = [];
  try {
    const ports = [await freePort(), await freePort()];
    for (const port of ports) hosts.push(startDaemon(hostConfig(port)));
    await Promise.all(hosts.map((h) => h.waitFor((l) => l.msg === 'postseal started')));
    // Today's mail to each host lands in the one store.
    for (const port of ports) {
      const c = await TestClient.connect(port);
      const r = await c.send({ from: 'x@a.test', to: ['b@example.net'], data: 'From: x@a.test\r\nTo: b@example.net\r\nSubject: s\r\n\r\nbody\r\n' });
      await c.quit();
      expect(r.final).toMatchObject({ code: 250 });
    }
    const deadline = Date.now() + 15000;
    while ((await results.peek('a.test', utcDay(new Date()))).messages < 2) {
      if (Date.now() > deadline) throw new Error('the two hosts did not both record their mail in Redis');
      await new Promise((r) => setTimeout(r, 50));
    }
    const isSent = (l: Record<string, unknown>) => l.msg === 'DMARC aggregate report sent';
    for (let end = Date.now() + 15000; !hosts.some((h) => h.lines.some(isSent)); ) {
      if (Date.now() > end) throw new Error(`no report sent: ${JSON.stringify(hosts.map((h) => h.lines)).slice(0, 2000)}`);
      await new Promise((r) => setTimeout(r, 25));
    }
    const sent = hosts.flatMap((h) => h.lines.filter(isSent))[0];
    expect(sent).toMatchObject({ policyDomain: 'a.test', period: utcDay(yesterday), messages: 7 });
    // Both hosts run a pass at start and every checkIntervalMs (1 s): after two more intervals,
    // still the one report and no other attempt.
    await new Promise((r) => setTimeout(r, 2200));
    const attempts = hosts.flatMap((h) => h.lines.filter((l) => String(l.msg).startsWith('DMARC aggregate report')));
    expect(attempts).toHaveLength(1);
    const reports = sink.received.filter((m) => m.recipients.some((r) => r.address === 'agg@a.test'));
    expect(reports).toHaveLength(1);
    const text = reports[0].data.toString('utf8');
    const b64 = /filename="[^"]+\.xml\.gz"\r\n\r\n([A-Za-z0-9+/=\r\n]+?)\r\n--/.exec(text)?.[1] ?? '';
    const xml = gunzipSync(Buffer.from(b64, 'base64')).toString('utf8');
    const rows = [...xml.matchAll(/<source_ip>([^<]+)<\/source_ip><count>(\d+)<\/count>/g)].map((m) => `${m[1]} ${m[2]}`);
    expect(rows.sort()).toEqual(['192.0.2.1 4', '192.0.2.2 3']);
    expect(await results.periods()).toEqual([{ policyDomain: 'a.test', period: utcDay(new Date()) }]);
  } finally {
    for (const h of hosts) {
      h.proc.kill('SIGTERM');
      await h.exited;
    }
    await store.close();
  }
}, 60_000);
