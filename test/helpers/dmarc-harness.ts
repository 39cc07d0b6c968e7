/**
 * For the tests of where postseal keeps DMARC results: a postseal with the spf and dmarc stages
 * and aggregate reports on (results are kept only then; nothing of today is finished, so nothing
 * is sent), a loopback DNS server with `zone`, an smtp-sink downstream, the given store settings.
 */
import { startDnsServer, type DnsServer, type Zone } from './dns-server';
import { startHarness, type Harness } from './postseal';
import { startSink, type Sink } from './sink';
import { type Reply, TestClient } from './smtp-client';

export interface DmarcHarness {
  readonly dns: DnsServer;
  readonly sink: Sink;
  readonly h: Harness;
  /** One message from `from` (with that From field) over a connection of its own: its final reply. */
  send(from?: string): Promise<Reply | undefined>;
  close(): Promise<void>;
}

export async function startDmarcHarness(zone: Zone, store?: Record<string, unknown>): Promise<DmarcHarness> {
  const dns = await startDnsServer(zone);
  const sink = await startSink();
  const h = await startHarness({
    forwardPort: sink.port,
    banks: { default: { stages: ['spf', 'dmarc'], notify: { host: '127.0.0.1', port: sink.port } } },
    main: { dns: { servers: [dns.server], timeoutMs: 2000, retries: 0 }, ...(store ? { store } : {}), services: { dmarcReports: { enabled: true } } },
  });
  return {
    dns,
    sink,
    h,
    async send(from = 'a@example.org') {
      const c = await TestClient.connect(h.app.portOf('default'));
      try {
        const r = await c.send({ from, to: ['b@example.net'], data: `From: ${from}\r\nTo: b@example.net\r\nSubject: s\r\n\r\nbody\r\n` });
        return r.final;
      } finally {
        await c.quit();
      }
    },
    async close() {
      await h.close();
      await sink.close();
      await dns.close();
    },
  };
}
