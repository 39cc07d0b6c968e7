/**
 * The signing keys: the key table and signing table files (keys/schema.ts) read and checked
 * at start-up and on SIGHUP, every private key parsed once into a KeyObject. A message never
 * touches a file: the dkim-sign stage asks `ruleFor(domain)` / `forAuthor(domain)`. Only keys
 * in state `active` sign; `staged` and `retiring` keys are loaded and checked all the same,
 * so that `postseal keys show/test` and an activation see every key the tables name.
 *
 * Fails (stopping start-up, or refusing a reload so the running keys stay) with
 * CFG_KEY_UNREADABLE (missing or unreadable key file), CFG_KEY_INVALID (not a private key,
 * wrong type for its algorithm, RSA under 1024 bits), CFG_SIGNING_CATCH_ALL (a rule for
 * every domain or everything under a public suffix such as com or co.uk), CFG_INCONSISTENT (unknown key name, duplicate rule, a d= not
 * related to the author domain without thirdParty, DomainKeys on an Ed25519 key), and the
 * schema errors of config/yaml-file.ts; each names the file and the JSON pointer.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import Ajv from 'ajv';
import { readYaml, schemaError } from '../config/yaml-file';
import { isPostsealError, PostsealError, type ConfigWarning } from '../errors';
import { isPublicSuffix, normalizeDomain } from '../lib/author';
import type { DkimAlgorithm } from '../lib/dkim/signature';
import { keyTableSchema, signingTableSchema, type DomainKeysMode, type KeyState, type KeyTable, type KeyTableEntry, type SigningTable } from './schema';

export interface SigningKey {
  readonly name: string;
  /** d=, lower-case A-label. */
  readonly domain: string;
  readonly selector: string;
  readonly algorithm: DkimAlgorithm;
  readonly privateKey: KeyObject;
  readonly domainKeys: DomainKeysMode;
  readonly state: KeyState;
  /** Absolute path of the PEM file. */
  readonly keyFile: string;
}

export interface SigningRule {
  /** Position in the signing table (its JSON pointer is /index). */
  readonly index: number;
  /** example.com or *.example.com, lower-case A-label. */
  readonly author: string;
  /** Every key the rule names, in its order, whatever their state. */
  readonly keys: readonly SigningKey[];
  /** The keys that sign: the active ones. */
  readonly signing: readonly SigningKey[];
}

export interface KeyStore {
  readonly size: number;
  /** The two files, absolute; null when none are configured. */
  readonly files: SigningFiles | null;
  /** Every key of the key table, in its order, whatever its state. */
  readonly keys: readonly SigningKey[];
  readonly rules: readonly SigningRule[];
  /** The rule for an author domain (lower-case A-label): its exact rule, else the nearest *.parent rule, else null. */
  ruleFor(domain: string): SigningRule | null;
  /** The keys that sign an author domain's mail: the active keys of ruleFor(domain). */
  forAuthor(domain: string): readonly SigningKey[];
}

export interface SigningFiles {
  readonly keyTableFile: string;
  readonly signingTableFile: string;
}

const MIN_RSA_BITS = 1024;

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true, verbose: true });
const validateKeyTable = ajv.compile(keyTableSchema);
const validateSigningTable = ajv.compile(signingTableSchema);

export const emptyKeyStore: KeyStore = { size: 0, files: null, keys: [], rules: [], ruleFor: () => null, forAuthor: () => [] };

/** Reads both files (paths relative to the main config file); both empty means no signing keys. */
export function loadKeyStore(configFile: string, files: SigningFiles): KeyStore {
  if (!files.keyTableFile && !files.signingTableFile) return emptyKeyStore;
  if (!files.keyTableFile || !files.signingTableFile) {
    throw new PostsealError('CFG_INCONSISTENT', `${configFile}: /dkimSign: keyTableFile and signingTableFile go together; set both or neither`);
  }
  for (const key of ['keyTableFile', 'signingTableFile'] as const) {
    if (OPENDKIM_DATASET.test(files[key])) throw notOurTable(configFile, `/dkimSign/${key}`, `"${files[key]}" is an OpenDKIM data set`);
  }
  const keyTableFile = path.resolve(path.dirname(configFile), files.keyTableFile);
  const signingTableFile = path.resolve(path.dirname(configFile), files.signingTableFile);
  const keyTable = readTable(keyTableFile) ?? {};
  if (typeof keyTable === 'string') throw notOurTable(keyTableFile, '', 'this is a text table (an OpenDKIM KeyTable?), not YAML');
  if (!validateKeyTable(keyTable)) throw schemaError(keyTableFile, validateKeyTable.errors);
  const signingTable = readTable(signingTableFile) ?? [];
  if (typeof signingTable === 'string') throw notOurTable(signingTableFile, '', 'this is a text table (an OpenDKIM SigningTable?), not YAML');
  if (!validateSigningTable(signingTable)) throw schemaError(signingTableFile, validateSigningTable.errors);
  const keys = loadKeys(keyTableFile, keyTable as KeyTable);
  return buildStore({ keyTableFile, signingTableFile }, signingTable as SigningTable, keys);
}

/** refile:, file:, csl:, db: and the other OpenDKIM data set prefixes (opendkim.conf(5) "DATA SETS"). */
const OPENDKIM_DATASET = /^(refile|file|csl|db|dsn|ldap|ldaps|lua|mdb|memcache|redis|erlang):/i;

/** A table that is no YAML at all is most often OpenDKIM's ("*@example.com key" starts with a YAML alias). */
function readTable(file: string): unknown {
  try {
    return readYaml(file);
  } catch (err) {
    if (!isPostsealError(err, 'CFG_YAML_INVALID')) throw err;
    throw new PostsealError('CFG_YAML_INVALID', `${err.message}; if it is an OpenDKIM table, ${IMPORT_FIX}`, { cause: err });
  }
}

const IMPORT_FIX =
  "convert OpenDKIM's with postseal keys import --opendkim-keytable /etc/opendkim/KeyTable --opendkim-signingtable refile:/etc/opendkim/SigningTable --out /etc/postseal/keys, then name the two files it writes in dkimSign";

/** OpenDKIM's tables given where postseal's YAML tables go: the fix is `postseal keys import`. */
function notOurTable(file: string, pointer: string, what: string): PostsealError {
  return new PostsealError('CFG_SCHEMA_INVALID', `${file}: ${pointer || '/'}: ${what}; postseal reads its own YAML key table and signing table (docs/signing.md): ${IMPORT_FIX}`);
}

function loadKeys(file: string, table: KeyTable): Map<string, SigningKey> {
  const keys = new Map<string, SigningKey>();
  for (const [name, entry] of Object.entries(table)) {
    const domain = normalizeDomain(entry.domain);
    if (!domain) throw new PostsealError('CFG_SCHEMA_INVALID', `${file}: /${name}/domain: "${entry.domain}" is not a domain name`);
    const keyFile = path.resolve(path.dirname(file), entry.keyFile);
    keys.set(name, {
      name,
      domain,
      selector: entry.selector.toLowerCase(),
      algorithm: entry.algorithm,
      privateKey: readKey(file, name, keyFile, entry),
      domainKeys: entry.domainKeys,
      state: entry.state,
      keyFile,
    });
  }
  return keys;
}

function readKey(file: string, name: string, keyFile: string, entry: KeyTableEntry): KeyObject {
  const where = `${file}: /${name}/keyFile: ${keyFile}`;
  let pem: Buffer;
  try {
    pem = readFileSync(keyFile);
  } catch (err) {
    throw new PostsealError('CFG_KEY_UNREADABLE', `${where}: cannot read: ${(err as Error).message}${whoCannotRead(keyFile, err)}`, { cause: err });
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw new PostsealError('CFG_KEY_INVALID', `${where}: not a PEM private key (${(err as Error).message}); ${notPrivateFix(pem)}`, { cause: err });
  }
  const type = entry.algorithm === 'rsa-sha256' ? 'rsa' : 'ed25519';
  if (key.asymmetricKeyType !== type) {
    throw new PostsealError('CFG_KEY_INVALID', `${where}: is an ${key.asymmetricKeyType} key, but /${name}/algorithm ${entry.algorithm} needs an ${type} key`);
  }
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (type === 'rsa' && bits < MIN_RSA_BITS) {
    throw new PostsealError('CFG_KEY_INVALID', `${where}: RSA key of ${bits} bits; RFC 8301 needs at least ${MIN_RSA_BITS} (2048 recommended)`);
  }
  if (entry.domainKeys !== 'off' && type !== 'rsa') {
    throw new PostsealError('CFG_INCONSISTENT', `${file}: /${name}/domainKeys: DomainKeys signs with rsa-sha1 only; use an RSA key or set it to off`);
  }
  return key;
}

/** The public halves people give instead: a PEM public key, or opendkim-genkey's selector.txt record. */
function notPrivateFix(pem: Buffer): string {
  const text = pem.subarray(0, 4096).toString('latin1');
  if (/-----BEGIN (RSA )?PUBLIC KEY-----/.test(text)) return 'this is a public key: give the private key it was made from (opendkim-genkey writes it as SELECTOR.private)';
  if (/v=DKIM1|_domainkey/.test(text)) return "this is the DNS record (opendkim-genkey's SELECTOR.txt): give the private key beside it, SELECTOR.private";
  return 'make one with postseal keys generate';
}

function buildStore(files: SigningFiles, table: SigningTable, keys: Map<string, SigningKey>): KeyStore {
  const file = files.signingTableFile;
  const rules = new Map<string, SigningRule>();
  table.forEach((rule, i) => {
    const wildcard = rule.author.startsWith('*');
    const domain = normalizeDomain(wildcard ? rule.author.slice(2) : rule.author);
    if (rule.author === '*' || (wildcard && isPublicSuffix(domain))) {
      throw new PostsealError(
        'CFG_SIGNING_CATCH_ALL',
        `${file}: /${i}/author: "${rule.author}" would sign mail of every domain${rule.author === '*' ? '' : ` under .${domain}`}; list your domains (example.com, *.example.com)`,
      );
    }
    if (!domain) throw new PostsealError('CFG_SCHEMA_INVALID', `${file}: /${i}/author: "${rule.author}" is not a domain name`);
    const pattern = wildcard ? `*.${domain}` : domain;
    if (rules.has(pattern)) throw new PostsealError('CFG_INCONSISTENT', `${file}: /${i}/author: a rule for ${pattern} comes earlier; merge their keys into one rule`);
    const chosen = rule.keys.map((name, j) => {
      const key = keys.get(name);
      if (!key) throw new PostsealError('CFG_INCONSISTENT', `${file}: /${i}/keys/${j}: no key "${name}" in the key table`);
      if (!rule.thirdParty && !isSameOrParent(key.domain, domain)) {
        throw new PostsealError(
          'CFG_INCONSISTENT',
          `${file}: /${i}/keys/${j}: key "${name}" signs d=${key.domain}, which is not ${domain} or a parent of it; set thirdParty: true if that is intended`,
        );
      }
      return key;
    });
    rules.set(pattern, { index: i, author: pattern, keys: chosen, signing: chosen.filter((k) => k.state === 'active') });
  });
  const ruleFor = (domain: string): SigningRule | null => {
    const exact = rules.get(domain);
    if (exact) return exact;
    for (let dot = domain.indexOf('.'); dot >= 0; dot = domain.indexOf('.', dot + 1)) {
      const parent = rules.get(`*.${domain.slice(dot + 1)}`);
      if (parent) return parent;
    }
    return null;
  };
  return {
    size: keys.size,
    files,
    keys: [...keys.values()],
    rules: [...rules.values()],
    ruleFor,
    forAuthor: (domain) => ruleFor(domain)?.signing ?? [],
  };
}

/**
 * Key files that group or others may read or write (mode & 077): a warning, not a refusal,
 * since a root:postseal 0640 file is a deliberate choice on some hosts; but a 0644 key is
 * usually a mistake that publishes the private key to every local user.
 */
export function keyFileWarnings(store: KeyStore): ConfigWarning[] {
  const warnings: ConfigWarning[] = [];
  const seen = new Set<string>();
  for (const key of store.keys) {
    if (seen.has(key.keyFile)) continue;
    seen.add(key.keyFile);
    let mode: number;
    try {
      mode = statSync(key.keyFile).mode & 0o777;
    } catch {
      continue; // Read a moment ago; gone now is for the next load to report.
    }
    if ((mode & 0o077) === 0) continue;
    warnings.push({
      code: 'CFG_KEY_PERMISSIONS',
      message: `${store.files?.keyTableFile}: /${key.name}/keyFile: ${key.keyFile} has mode 0${mode.toString(8)}, readable or writable by group or others; run chmod 600 ${key.keyFile} and chown it to the user postseal runs as`,
    });
  }
  return warnings;
}

/** domain is parent or below it (both lower-case A-labels). */
export function isSameOrParent(parent: string, domain: string): boolean {
  return domain === parent || domain.endsWith(`.${parent}`);
}

/**
 * For a permission error, who is asking and what the file allows: a key generated by root
 * (0600, root-owned) is the usual cause when postseal runs as its own user.
 */
function whoCannotRead(keyFile: string, err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code !== 'EACCES' && code !== 'EPERM') return '';
  const me = `uid ${process.getuid?.()} gid ${process.getgid?.()}`;
  try {
    const st = statSync(keyFile);
    const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
    return `; postseal runs as ${me}, the file is owner uid ${st.uid} gid ${st.gid} mode ${mode}: make postseal's user its owner (postseal keys generate --owner USER, or chown USER ${keyFile})`;
  } catch {
    // The folder itself is closed to us: stat fails the same way.
    return `; postseal runs as ${me} and cannot reach the file's folder ${path.dirname(keyFile)}: let postseal's user search it (chmod o+x, or chgrp and g+x)`;
  }
}
