/**
 * For the policy service's tests: a config file with services.policy (port 0), a PolicyService
 * on a real socket over a real store (sqlite in a temp folder, or a Redis URL), and a client
 * that speaks the policy protocol (SMTPD_POLICY_README) over a real connection.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { createDnsResolver } from '../../src/lib/dns';
import { createLogger, type Logger } from '../../src/lib/log';
import type { Telemetry } from '../../src/lib/telemetry';
import { PolicyService } from '../../src/services/policy';
import { loadConfig } from '../../src/setup';
import { openSqliteStore } from '../../src/store/sqlite';
import type { Store } from '../../src/store/store';

export function writePolicyConfig(policy: Record<string, unknown>, main: Record<string, unknown> = {}, dir = mkdtempSync(path.join(tmpdir(), 'postseal-policy-'))): string {
  const config = { bankDir: '', listeners: [{ port: 0, bank: 'default' }], hostname: 'mx.test.example', services: { policy: { enabled: true, port: 0, ...policy } }, ...main };
  writeFileSync(path.join(dir, 'postseal.yaml'), YAML.stringify(config));
  return path.join(dir, 'postseal.yaml');
}

export function tempSqliteStore(): Store {
  const dir = mkdtempSync(path.join(tmpdir(), 'postseal-policy-store-'));
  return openSqliteStore({ file: path.join(dir, 'state.db'), keyPrefix: 'test:', busyTimeoutMs: 2000 });
}

export interface Clock {
  now: () => number;
  advance(sec: number): void;
}

export function fixedClock(startSec = 1_800_000_000): Clock {
  let t = startSec * 1000;
  return { now: () => t, advance: (sec) => (t += sec * 1000) };
}

export async function startPolicy(configFile: string, store: Store, opts: { dnsServer?: string; clock?: Clock; log?: Logger; telemetry?: Telemetry } = {}): Promise<PolicyService> {
  const config = loadConfig(configFile);
  const resolver = createDnsResolver({ servers: opts.dnsServer ? [opts.dnsServer] : ['127.0.0.1:9'], timeoutMs: 300, retries: 0, cacheMaxEntries: 0, cacheMaxTtlSec: 0 });
  const service = new PolicyService(config, { store, resolver, now: opts.clock?.now ?? Date.now, log: opts.log ?? createLogger('fatal'), telemetry: opts.telemetry });
  await service.start();
  return service;
}

/** One connection; ask() writes one request and reads one answer. */
export class PolicyClient {
  private buffer = '';
  private waiters: ((s: string) => void)[] = [];
  closed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.buffer += d;
      this.drain();
    });
    this.closed = new Promise((resolve) => socket.on('close', () => resolve()));
    socket.on('error', () => undefined);
  }

  static connect(port: number): Promise<PolicyClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(new PolicyClient(s)));
      s.once('error', reject);
    });
  }

  private drain(): void {
    let end = this.buffer.indexOf('\n\n');
    while (end >= 0 && this.waiters.length) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      (this.waiters.shift() as (s: string) => void)(block.replace(/^action=/, ''));
      end = this.buffer.indexOf('\n\n');
    }
  }

  /** The next answer's action (without "action="). */
  next(): Promise<string> {
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      this.drain();
    });
  }

  write(text: string): void {
    this.socket.write(text);
  }

  ask(attrs: Record<string, string>): Promise<string> {
    const answer = this.next();
    this.write(requestText(attrs));
    return answer;
  }

  close(): void {
    this.socket.destroy();
  }
}

export function requestText(attrs: Record<string, string>): string {
  return `${Object.entries(attrs)
    .map(([k, v]) => `${k}=${v}\n`)
    .join('')}\n`;
}

/** A request as Postfix 3.7 sends it at RCPT. */
export function rcptRequest(over: Record<string, string> = {}): Record<string, string> {
  return {
    request: 'smtpd_access_policy',
    protocol_state: 'RCPT',
    protocol_name: 'ESMTP',
    client_address: '192.0.2.10',
    client_name: 'mail.sender.example',
    reverse_client_name: 'mail.sender.example',
    helo_name: 'mail.sender.example',
    sender: 'alice@sender.example',
    recipient: 'bob@rcpt.example',
    recipient_count: '0',
    queue_id: '',
    instance: `i${Math.random().toString(36).slice(2)}`,
    size: '0',
    sasl_method: '',
    sasl_username: '',
    sasl_sender: '',
    ccert_subject: '',
    encryption_protocol: '',
    ...over,
  };
}
