/**
 * Round trips through postseal with the inbound authentication stages on, keys and policies
 * served by a loopback DNS server: the DKIM corpus zone plus whatever a test adds.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { startDnsServer, type DnsServer, type Zone } from './dns-server';
import { startHarness } from './postseal';
import { startSink, type Sink } from './sink';
import { TestClient, type Reply } from './smtp-client';

export const corpusDir = path.resolve(__dirname, '../fixtures/messages/dkim');
export const corpusZone = JSON.parse(readFileSync(path.resolve(__dirname, '../fixtures/dns/dkim-corpus.json'), 'utf8')) as Zone;
export const inboundStages = ['loop-guard', 'header-sanity', 'dkim-verify', 'spf', 'dmarc', 'arc-verify', 'authentication-results'];

export function corpusMessage(file: string): Buffer {
  return readFileSync(path.join(corpusDir, file));
}

export interface AuthRoundTrip {
  dns: DnsServer;
  send(data: string | Buffer, opts?: { from?: string; xforward?: string }): Promise<{ final?: Reply; delivered?: string }>;
  logs: Record<string, unknown>[];
  close(): Promise<void>;
}

/** postseal with `banks` (default: the inbound stages), DNS answers from `zone`, reinjecting to a sink. */
export async function startAuthRoundTrip(zone: Zone, banks?: Record<string, Record<string, unknown>>): Promise<AuthRoundTrip> {
  const dns = await startDnsServer(zone);
  const sink: Sink = await startSink();
  const h = await startHarness({
    forwardPort: sink.port,
    banks: banks ?? { default: { stages: inboundStages } },
    main: { dns: { servers: [dns.server], timeoutMs: 300, retries: 0 } },
  });
  return {
    dns,
    logs: h.logs,
    async send(data, opts = {}) {
      const before = sink.received.length;
      const c = await TestClient.connect(h.app.portOf('default'));
      const r = await c.send({ from: opts.from ?? 'alice@example.com', to: ['bob@example.net'], data, xforward: opts.xforward ?? 'ADDR=192.0.2.10 HELO=mail.example.com' });
      await c.quit();
      return { final: r.final, delivered: sink.received.length > before ? sink.received[sink.received.length - 1].data.toString('latin1') : undefined };
    },
    async close() {
      await h.close();
      await sink.close();
      await dns.close();
    },
  };
}

/** The unfolded value of our Authentication-Results field in a delivered message. */
export function ourAuthResults(delivered: string, authservId = 'filter.test'): string[] {
  const head = delivered.slice(0, delivered.indexOf('\r\n\r\n') + 2);
  const fields = head.split(/\r\n(?![ \t])/).filter((f) => /^authentication-results:/i.test(f));
  return fields.map((f) => f.replace(/\r\n[ \t]+/g, ' ').replace(/^[^:]+:\s*/, '')).filter((v) => v.toLowerCase().startsWith(`${authservId.toLowerCase()};`));
}
