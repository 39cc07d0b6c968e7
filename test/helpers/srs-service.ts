/**
 * The SRS map service in this process on free loopback ports, from a real configuration file
 * (services.srs with its own secrets file), and clients for both of its protocols.
 */
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { createLogger } from '../../src/lib/log';
import type { Telemetry } from '../../src/lib/telemetry';
import { SrsService } from '../../src/services/srs';
import { loadConfig, type LoadedConfig } from '../../src/setup';

export const SRS_DOMAIN = 'fwd.example';
export const SRS_SECRET = 'service-test-secret-1';

export interface SrsFixture {
  readonly service: SrsService;
  readonly dir: string;
  readonly secretsFile: string;
  /** Writes the configuration file again with these srs settings and loads it. */
  config(over?: Record<string, unknown>): LoadedConfig;
}

export async function startSrsService(over: Record<string, unknown> = {}, now?: () => number, telemetry?: Telemetry): Promise<SrsFixture> {
  const dir = mkdtempSync(path.join(tmpdir(), 'srs-service-'));
  const secretsFile = path.join(dir, 'srs-secrets');
  writeFileSync(secretsFile, `${SRS_SECRET}\n`);
  chmodSync(secretsFile, 0o600);
  const config = (o: Record<string, unknown> = over) => {
    const file = path.join(dir, 'postseal.yaml');
    const srs = { enabled: true, domain: SRS_DOMAIN, secretsFile: 'srs-secrets', socketmapPort: 0, tcpForwardPort: 0, tcpReversePort: 0, localDomains: ['local.example'], ...o };
    writeFileSync(file, YAML.stringify({ bankDir: '', log: { level: 'fatal' }, services: { srs } }));
    return loadConfig(file);
  };
  const service = new SrsService(config(), { log: createLogger('silent'), ...(now ? { now } : {}), ...(telemetry ? { telemetry } : {}) });
  await service.start();
  return { service, dir, secretsFile, config };
}

/** Connects to a loopback port. */
export function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

export function netstring(s: string): string {
  return `${Buffer.byteLength(s)}:${s},`;
}

/**
 * Reads from a socket until `count` replies have arrived (netstrings or lines), or it closes.
 * Resolves with the replies and whether the peer closed.
 */
export function readReplies(sock: net.Socket, kind: 'netstring' | 'line', count: number, timeoutMs = 5000): Promise<{ replies: string[]; closed: boolean }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const replies: string[] = [];
    const timer = setTimeout(() => reject(new Error(`timed out with ${replies.length}/${count} replies: ${JSON.stringify(replies.slice(-3))}`)), timeoutMs);
    const finish = (closed: boolean) => {
      clearTimeout(timer);
      sock.removeAllListeners('data');
      resolve({ replies, closed });
    };
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (kind === 'line') {
          const nl = buf.indexOf(0x0a);
          if (nl < 0) break;
          replies.push(buf.toString('utf8', 0, nl));
          buf = buf.subarray(nl + 1);
        } else {
          const colon = buf.indexOf(0x3a);
          if (colon < 0) break;
          const len = Number(buf.toString('latin1', 0, colon));
          if (buf.length < colon + len + 2) break;
          if (buf[colon + 1 + len] !== 0x2c) return reject(new Error('reply is no netstring'));
          replies.push(buf.toString('utf8', colon + 1, colon + 1 + len));
          buf = buf.subarray(colon + len + 2);
        }
      }
      if (replies.length >= count) finish(false);
    });
    sock.once('close', () => finish(true));
    sock.once('error', () => undefined);
  });
}

/** One request and its reply on a new connection. */
export async function socketmapQuery(port: number, map: string, key: string): Promise<string> {
  const s = await connect(port);
  const r = readReplies(s, 'netstring', 1);
  s.write(netstring(`${map} ${key}`));
  const { replies } = await r;
  s.destroy();
  return replies[0] ?? '(closed)';
}
