/**
 * The two independent DKIM verifiers from Debian (Mail::DKIM, libmail-dkim-perl; dkimpy,
 * python3-dkim), run on exact message bytes with their public keys served by the loopback
 * DNS server, and the test signing keys with their key table, signing table and DNS zone.
 */
import { execFile } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { keyRecordText } from '../../src/lib/dkim-key-record';
import type { Zone } from './dns-server';

export interface SignatureResult {
  type: 'dkim' | 'domainkeys';
  domain: string;
  selector: string;
  algorithm: string;
  result: string;
  detail: string;
}

const scripts = path.resolve(__dirname, '../fixtures/scripts');
export const keyDir = path.resolve(__dirname, '../fixtures/keys');

function run(cmd: string, args: string[], input: Buffer): Promise<SignatureResult[]> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { encoding: 'buffer', timeout: 20000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`${cmd} failed: ${err.message}\n${stderr.toString()}`));
      resolve(
        stdout
          .toString()
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as SignatureResult),
      );
    });
    child.stdin!.end(input);
  });
}

export const mailDkim = (message: Buffer, dnsServer: string) => run('perl', [path.join(scripts, 'dkim-verify-maildkim.pl'), dnsServer], message);
// Debian's python3, not a python3 that some version manager put first on PATH.
export const dkimpy = (message: Buffer, dnsServer: string) => run('/usr/bin/python3', [path.join(scripts, 'dkim-verify-dkimpy.py'), dnsServer], message);

export interface TestKey {
  name: string;
  domain: string;
  selector: string;
  file: string;
  algorithm: 'rsa-sha256' | 'ed25519-sha256';
  domainKeys?: 'off' | 'nofws' | 'simple';
}

export const rsaKey: TestKey = { name: 'example-rsa', domain: 'example.com', selector: 'rsa2048', file: path.join(keyDir, 'rsa2048.pem'), algorithm: 'rsa-sha256' };
export const edKey: TestKey = { name: 'example-ed', domain: 'example.com', selector: 'ed1', file: path.join(keyDir, 'ed25519.pem'), algorithm: 'ed25519-sha256' };

/** The public key records of these keys, for startDnsServer. */
export function zoneFor(keys: readonly TestKey[]): Zone {
  const zone: Zone = {};
  for (const k of keys) zone[`${k.selector}._domainkey.${k.domain}`] = { TXT: [keyRecordText(createPrivateKey(readFileSync(k.file)))] };
  return zone;
}

/** Writes a key table and a signing table to a new folder; returns the main-config dkimSign section. */
export function writeSigningFiles(keys: readonly TestKey[], rules: { author: string; keys: string[]; thirdParty?: boolean }[]): { keyTableFile: string; signingTableFile: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'postseal-keys-'));
  const table = Object.fromEntries(
    keys.map((k) => [k.name, { domain: k.domain, selector: k.selector, keyFile: k.file, algorithm: k.algorithm, domainKeys: k.domainKeys ?? 'off' }]),
  );
  const keyTableFile = path.join(dir, 'key-table.yaml');
  const signingTableFile = path.join(dir, 'signing-table.yaml');
  writeFileSync(keyTableFile, YAML.stringify(table));
  writeFileSync(signingTableFile, YAML.stringify(rules));
  return { keyTableFile, signingTableFile };
}
