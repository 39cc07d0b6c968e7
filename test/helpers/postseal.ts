/**
 * Starts postseal in-process on port 0 with a bank folder written for the test, forwarding
 * to a sink. Banks are given as YAML objects; default.yaml gets the sink as its forward.
 */
import { mkdtempSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import YAML from 'yaml';
import { loadConfig } from '../../src/setup';
import { createLogger } from '../../src/lib/log';
import type { Telemetry } from '../../src/lib/telemetry';
import { startPostseal, type Postseal } from '../../src/main';

export interface Harness {
  app: Postseal;
  dir: string;
  spoolDir: string;
  logs: Record<string, unknown>[];
  /** The same log lines as written (JSON text). */
  logLines: string[];
  /** Files left in the spool folder. */
  spoolFiles(): string[];
  close(): Promise<void>;
}

export async function startHarness(opts: {
  forwardPort: number;
  banks?: Record<string, Record<string, unknown>>;
  listeners?: { bank: string; protocol?: 'smtp' | 'lmtp' }[];
  main?: Record<string, unknown>;
  /** Where the message path reports (services/metrics createProcessMetrics().telemetry); none by default. */
  telemetry?: Telemetry;
}): Promise<Harness> {
  const dir = mkdtempSync(path.join(tmpdir(), 'postseal-test-'));
  const spoolDir = mkdtempSync(path.join(tmpdir(), 'postseal-spool-'));
  const bankDir = path.join(dir, 'banks');
  require('node:fs').mkdirSync(bankDir);
  const banks: Record<string, Record<string, unknown>> = { default: {}, ...opts.banks };
  for (const [name, overlay] of Object.entries(banks)) {
    const body = name === 'default' ? { forward: { host: '127.0.0.1', port: opts.forwardPort, ...(overlay.forward as object) }, ...withoutForward(overlay) } : overlay;
    writeFileSync(path.join(bankDir, `${name}.yaml`), YAML.stringify(body));
  }
  const listeners = (opts.listeners ?? [{ bank: 'default' }]).map((l) => ({ port: 0, bank: l.bank, protocol: l.protocol ?? 'smtp' }));
  const main = { hostname: 'filter.test', bankDir: 'banks', listeners, spool: { dir: spoolDir, memoryThresholdBytes: 64 * 1024 }, ...opts.main };
  writeFileSync(path.join(dir, 'postseal.yaml'), YAML.stringify(main));
  const logs: Record<string, unknown>[] = [];
  const logLines: string[] = [];
  const sink = new Writable({
    write(chunk, _e, cb) {
      for (const line of chunk.toString().split('\n')) {
        if (!line) continue;
        logLines.push(line);
        logs.push(JSON.parse(line));
      }
      cb();
    },
  });
  const app = await startPostseal(loadConfig(path.join(dir, 'postseal.yaml')), createLogger('info', sink), opts.telemetry ? { telemetry: opts.telemetry } : {});
  return { app, dir, spoolDir, logs, logLines, spoolFiles: () => readdirSync(spoolDir), close: () => app.close() };
}

function withoutForward(o: Record<string, unknown>): Record<string, unknown> {
  const { forward: _f, ...rest } = o;
  return rest;
}
