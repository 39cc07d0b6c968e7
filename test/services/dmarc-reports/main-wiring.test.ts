import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { StoredDmarcResults } from '../../../src/store/dmarc-results';
import { openSqliteStore } from '../../../src/store/sqlite';
import { startDnsServer, type DnsServer } from '../../helpers/dns-server';
import { startHarness, type Harness } from '../../helpers/postseal';
import { dueDayTime } from '../../helpers/report-day';
import { startSink, type Sink } from '../../helpers/sink';
import { TestClient } from '../../helpers/smtp-client';

let dns: DnsServer;
let sink: Sink;
let h: Harness | undefined;

beforeAll(async () => {
  dns = await startDnsServer({
    '_dmarc.a.test': { TXT: ['v=DMARC1; p=none; rua=mailto:agg@a.test'] },
    'evil.test': { TXT: ['v=spf1 -all'] },
    '_dmarc.f.test': { TXT: ['v=DMARC1; p=reject; ruf=mailto:ruf@f.test'] },
  });
  sink = await startSink();
});
afterAll(async () => {
  await h?.close();
  await sink.close();
  await dns.close();
});

test('postseal started with services.dmarcReports sends the finished days at start, through the notify target', async () => {
  const db = path.join(mkdtempSync(path.join(tmpdir(), 'dmarc-wiring-')), 'state.db');
  const store = openSqliteStore({ file: db, keyPrefix: 'postseal:', busyTimeoutMs: 2000 });
  await new StoredDmarcResults(store).record({
    receivedAt: dueDayTime(),
    sourceIp: '192.0.2.1',
    headerFrom: 'a.test',
    policyDomain: 'a.test',
    policy: 'none',
    result: 'pass',
    disposition: 'none',
    dkim: [{ domain: 'a.test', selector: 's', result: 'pass' }],
    spf: { domain: 'a.test', result: 'pass' },
  });
  await store.close();
  h = await startHarness({
    forwardPort: sink.port,
    banks: { default: { notify: { host: '127.0.0.1', port: sink.port } } },
    main: {
      dns: { servers: [dns.server] },
      store: { backend: 'sqlite', sqlite: { file: db } },
      services: { dmarcReports: { enabled: true, from: 'reports@filter.test' } },
    },
  });
  const deadline = Date.now() + 10000;
  while (!h.logs.some((l) => l.msg === 'DMARC aggregate report sent')) {
    if (Date.now() > deadline) throw new Error(`no report sent:\n${h.logLines.join('\n')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  expect(sink.received).toHaveLength(1);
  expect(sink.received[0].mailFrom).toBe('reports@filter.test');
  expect(sink.received[0].recipients.map((r) => r.address)).toEqual(['agg@a.test']);
  expect(h.logs.find((l) => l.msg === 'DMARC aggregate report sent')).toMatchObject({ service: 'dmarc-reports', policyDomain: 'a.test', messages: 1 });
});

test('postseal started with failureReports sends a failure report for mail that failed DMARC, after the reply to the client', async () => {
  await h?.close();
  sink.received.length = 0;
  h = await startHarness({
    forwardPort: sink.port,
    banks: { default: { stages: ['spf', 'dmarc'], notify: { host: '127.0.0.1', port: sink.port } } },
    main: {
      dns: { servers: [dns.server], timeoutMs: 2000, retries: 0 },
      services: { dmarcReports: { from: 'reports@filter.test', failureReports: { enabled: true } } },
    },
  });
  const c = await TestClient.connect(h.app.portOf('default'));
  const r = await c.send({ from: 'mallory@evil.test', to: ['carol@filter.test'], data: 'From: ceo@f.test\r\nTo: carol@filter.test\r\nSubject: pay\r\n\r\nbody\r\n' });
  await c.quit();
  expect(r.final).toMatchObject({ code: 550 });
  const deadline = Date.now() + 10000;
  while (!h.logs.some((l) => l.msg === 'DMARC failure report sent')) {
    if (Date.now() > deadline) throw new Error(`no failure report sent:\n${h.logLines.join('\n')}`);
    await new Promise((res) => setTimeout(res, 50));
  }
  expect(sink.received).toHaveLength(1);
  expect(sink.received[0].recipients.map((x) => x.address)).toEqual(['ruf@f.test']);
  expect(sink.received[0].data.toString()).toContain('Feedback-Type: auth-failure\r\n');
  expect(h.logs.find((l) => l.msg === 'DMARC failure report sent')).toMatchObject({ service: 'dmarc-failure-reports', policyDomain: 'f.test' });
});
