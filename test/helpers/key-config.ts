/**
 * For the `postseal keys` tests: a config folder with a key table and a signing table, the
 * zone-file records the CLI prints loaded into a loopback DNS zone, and the CLI run without
 * blocking this process (the DNS server and the sink it talks to live here).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { cliMain, nodeBin } from './cli';
import type { Zone } from './dns-server';

export interface KeyEntry {
  domain: string;
  selector: string;
  keyFile: string;
  algorithm: 'rsa-sha256' | 'ed25519-sha256';
  state?: 'staged' | 'active' | 'retiring';
}

export interface KeyConfig {
  dir: string;
  config: string;
  keyTableFile: string;
  signingTableFile: string;
}

/** postseal.yaml (one listener on port 0, resolver on `dnsServer`), an originating default bank, and the two signing files. */
export function writeKeyConfig(opts: { keys: Record<string, KeyEntry>; rules: { author: string; keys: string[] }[]; dnsServer?: string; forwardPort?: number }): KeyConfig {
  const dir = mkdtempSync(path.join(tmpdir(), 'postseal-keycfg-'));
  mkdirSync(path.join(dir, 'banks'));
  mkdirSync(path.join(dir, 'keys'), { recursive: true });
  const keyTableFile = path.join(dir, 'keys', 'key-table.yaml');
  const signingTableFile = path.join(dir, 'keys', 'signing-table.yaml');
  writeFileSync(keyTableFile, YAML.stringify(opts.keys));
  writeFileSync(signingTableFile, YAML.stringify(opts.rules));
  writeFileSync(
    path.join(dir, 'banks', 'default.yaml'),
    YAML.stringify({ forward: { host: '127.0.0.1', port: opts.forwardPort ?? 10025 }, originating: true, stages: ['dkim-sign'] }),
  );
  const main = {
    bankDir: 'banks',
    listeners: [{ port: 0, bank: 'default' }],
    dkimSign: { keyTableFile: 'keys/key-table.yaml', signingTableFile: 'keys/signing-table.yaml' },
    dns: { servers: opts.dnsServer ? [opts.dnsServer] : [], timeoutMs: 500, retries: 0, cacheMaxEntries: 0 },
  };
  writeFileSync(path.join(dir, 'postseal.yaml'), YAML.stringify(main));
  return { dir, config: path.join(dir, 'postseal.yaml'), keyTableFile, signingTableFile };
}

/** Every `name ttl IN TXT ( "..." ... )` record of zone-file text, with its character-strings as written. */
export function zoneFromRecords(text: string): Zone {
  const zone: Zone = {};
  for (const m of text.replace(/^;.*$/gm, '').matchAll(/^(\S+)\s+\d+\s+IN\s+TXT\s+\(([^)]*)\)/gm)) {
    const name = m[1].toLowerCase().replace(/\.$/, '');
    const strings = [...m[2].matchAll(/"([^"]*)"/g)].map((s) => s[1]);
    (zone[name] ??= { TXT: [] }).TXT!.push(strings);
  }
  return zone;
}

export function runCliAsync(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(nodeBin, [cliMain, ...args], { encoding: 'utf8', timeout: 30000 }, (err, stdout, stderr) => {
      resolve({ status: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr });
    });
  });
}
