/**
 * Loads the main config and the policy banks: YAML, overlay on `default`, JSON Schema
 * validation with defaults (ajv), cross-checks, then deep-frozen.
 *
 * Fails with CFG_* errors whose message names the file, the JSON pointer and what was
 * expected, so that start-up, `config check` and SIGHUP reload all explain themselves.
 * Paths in the file (bankDir, spool.dir, the key tables) are relative to the file. Checks that
 * need the file system or DNS (spool folder, forward loops) are in config/preflight.ts.
 */
import { existsSync, readdirSync } from 'node:fs';
import { hostname as osHostname, tmpdir } from 'node:os';
import path from 'node:path';
import Ajv from 'ajv';
import { PostsealError, type ConfigWarning } from '../errors';
import { bankSchema, type Bank } from './bank-schema';
import { mainConfigSchema, type MainConfig } from './main-schema';
import { readYaml, schemaError } from './yaml-file';
import { parseNetworks, type NetworkList } from '../lib/networks';
import { keyFileWarnings, loadKeyStore, type KeyStore } from '../keys/key-store';
import { checkSigningBank } from '../stages/dkim-sign/check';

/** The banks shipped with postseal, used when bankDir is empty and by the embedded default config. */
export const builtinBankDir = path.resolve(__dirname, '../../policy-banks');
export const builtinConfigFile = path.resolve(__dirname, '../../postseal.yaml');

export interface LoadedConfig {
  readonly file: string;
  readonly main: MainConfig;
  readonly banks: ReadonlyMap<string, Bank>;
  readonly hostname: string;
  readonly authservId: string;
  readonly trustedNetworks: NetworkList;
  /** DKIM signing keys and the signing table, parsed once (keys/key-store.ts). */
  readonly keys: KeyStore;
  /** Absolute folder of the bank files (each bank is <bankDir>/<name>.yaml). */
  readonly bankDir: string;
  /** What loading found worth a warning (key file modes); config/preflight.ts adds its own. */
  readonly warnings: readonly ConfigWarning[];
}

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true });
const validateMain = ajv.compile(mainConfigSchema);
const validateBank = ajv.compile(bankSchema);

export function loadConfig(file: string): LoadedConfig {
  const absFile = path.resolve(file);
  const raw = readYaml(absFile) ?? {};
  if (!validateMain(raw)) throw schemaError(absFile, validateMain.errors);
  const main = raw as MainConfig;
  const bankDir = main.bankDir === '' ? builtinBankDir : path.resolve(path.dirname(absFile), main.bankDir);
  const banks = loadBanks(bankDir, main);
  let trustedNetworks: NetworkList;
  try {
    trustedNetworks = parseNetworks(main.xforwardTrustedNetworks);
  } catch (err) {
    throw new PostsealError('CFG_SCHEMA_INVALID', `${absFile}: /xforwardTrustedNetworks: ${(err as Error).message}; write networks as 127.0.0.0/8 or ::1/128`, { cause: err });
  }
  const keys = loadKeyStore(absFile, main.dkimSign);
  const hostname = main.hostname || osHostname();
  // Like every other path, relative to this file (not to the directory postseal started in).
  main.spool.dir = main.spool.dir === '' ? tmpdir() : path.resolve(path.dirname(absFile), main.spool.dir);
  return deepFreeze({ file: absFile, main, banks, hostname, authservId: main.authservId || hostname, trustedNetworks, keys, bankDir, warnings: keyFileWarnings(keys) });
}

/** Reads every bank a listener names, each merged over default.yaml. */
function loadBanks(bankDir: string, main: MainConfig): Map<string, Bank> {
  const defaultFile = path.join(bankDir, 'default.yaml');
  const base = (readYaml(defaultFile) ?? {}) as Record<string, unknown>;
  const names = new Set(main.listeners.map((l) => l.bank));
  if (existsSync(bankDir)) {
    for (const f of readdirSync(bankDir)) if (f.endsWith('.yaml')) names.add(f.slice(0, -'.yaml'.length));
  }
  const banks = new Map<string, Bank>();
  for (const name of names) {
    const file = path.join(bankDir, `${name}.yaml`);
    if (name !== 'default' && !existsSync(file)) {
      throw new PostsealError('CFG_BANK_MISSING', `bank "${name}" has no file ${file}; create it (it may be empty: a bank is an overlay on default.yaml)`);
    }
    const overlay = name === 'default' ? {} : ((readYaml(file) ?? {}) as Record<string, unknown>);
    const merged = mergeOverlay(structuredClone(base), overlay);
    if (!validateBank(merged)) throw schemaError(name === 'default' ? defaultFile : file, validateBank.errors);
    const bank = merged as Bank;
    checkBank(name === 'default' ? defaultFile : file, bank, main);
    banks.set(name, bank);
  }
  return banks;
}

function checkBank(file: string, bank: Bank, main: MainConfig): void {
  // A forward to our own listener is found by config/preflight.ts, which resolves names.
  checkSigningBank(file, bank);
  const bankName = path.basename(file, '.yaml');
  for (const l of main.listeners.filter((x) => x.bank === bankName)) {
    if (bank.forward.protocol === 'lmtp' && l.protocol !== 'lmtp') {
      throw new PostsealError(
        'CFG_INCONSISTENT',
        `${file}: /forward/protocol: lmtp gives one reply per recipient, which an smtp listener (port ${l.port}) cannot pass up; use protocol smtp or make the listener lmtp`,
      );
    }
  }
}

/** Objects merge key by key; arrays and scalars in the overlay replace the base. */
function mergeOverlay(base: Record<string, unknown>, overlay: Record<string, unknown>): Record<string, unknown> {
  for (const [k, v] of Object.entries(overlay)) {
    const b = base[k];
    base[k] = isPlainObject(b) && isPlainObject(v) ? mergeOverlay(b, v) : v;
  }
  return base;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function deepFreeze<T>(value: T): T {
  if (value instanceof Map) {
    for (const v of value.values()) deepFreeze(v);
  } else if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return Object.freeze(value);
}
