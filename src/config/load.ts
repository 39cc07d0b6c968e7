/**
 * Loads the main config and the policy banks: YAML, overlay on `default`, JSON Schema
 * validation with defaults (ajv), cross-checks, then deep-frozen. Generic: the bank schema
 * and the checks of what a bank lists come from the caller (src/setup.ts passes the stage
 * registry's), so nothing here knows a stage, a key or the message path.
 *
 * Fails with CFG_* errors whose message names the file, the JSON pointer and what was
 * expected, so that start-up, `config check` and SIGHUP reload all explain themselves.
 * Paths in the file (bankDir, spool.dir, quarantine.dir, the key tables) are relative to the file. Checks that
 * need the file system or DNS (spool folder, forward loops) are in config/preflight.ts.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { hostname as osHostname, tmpdir } from 'node:os';
import path from 'node:path';
import Ajv from 'ajv';
import { PostsealError } from '../errors';
import type { Bank } from './bank-schema';
import { mainConfigSchema, type MainConfig } from './main-schema';
import { mappingOrNull, readYaml, schemaError } from './yaml-file';
import { compileBankRules, type BankChooser } from './bank-rules';
import { parseNetworks, type NetworkList } from './networks';

/** The banks shipped with postseal, used when bankDir is empty and by the embedded default config. */
export const builtinBankDir = path.resolve(__dirname, '../../policy-banks');
export const builtinConfigFile = path.resolve(__dirname, '../../postseal.yaml');

export interface ConfigFiles {
  readonly file: string;
  readonly main: MainConfig;
  readonly banks: ReadonlyMap<string, Bank>;
  readonly hostname: string;
  readonly authservId: string;
  readonly trustedNetworks: NetworkList;
  /** The banks chosen by client network and sender (main config bankRules, config/bank-rules.ts). */
  readonly bankChooser: BankChooser;
  /** Absolute folder of the bank files (each bank is <bankDir>/<name>.yaml). */
  readonly bankDir: string;
}

/** What the banks are validated against, from the caller. */
export interface BankRules {
  readonly schema: object;
  /** Checks of what a bank lists that its schema cannot express; throws a CFG_* error naming `file`. */
  readonly check: (file: string, bank: Bank) => void;
}

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true, verbose: true });
const validateMain = ajv.compile(mainConfigSchema);
const bankValidators = new WeakMap<object, ReturnType<typeof ajv.compile>>();

export function loadConfigFiles(file: string, bankRules: BankRules): ConfigFiles {
  const absFile = path.resolve(file);
  const raw = readYaml(absFile) ?? {};
  if (!validateMain(raw)) throw schemaError(absFile, validateMain.errors);
  const main = raw as MainConfig;
  const bankDir = main.bankDir === '' ? builtinBankDir : path.resolve(path.dirname(absFile), main.bankDir);
  let bankChooser: BankChooser;
  try {
    bankChooser = compileBankRules(main.bankRules);
  } catch (err) {
    throw new PostsealError('CFG_SCHEMA_INVALID', `${absFile}: ${(err as Error).message}; write networks as 192.0.2.0/24 or 2001:db8::/32`, { cause: err });
  }
  const banks = loadBanks(bankDir, main, bankRules, bankChooser.banks, absFile);
  let trustedNetworks: NetworkList;
  try {
    trustedNetworks = parseNetworks(main.xforwardTrustedNetworks);
  } catch (err) {
    throw new PostsealError('CFG_SCHEMA_INVALID', `${absFile}: /xforwardTrustedNetworks: ${(err as Error).message}; write networks as 127.0.0.0/8 or ::1/128`, { cause: err });
  }
  const hostname = main.hostname || osHostname();
  // Like every other path, relative to this file (not to the directory postseal started in).
  main.spool.dir = main.spool.dir === '' ? tmpdir() : path.resolve(path.dirname(absFile), main.spool.dir);
  main.quarantine.dir = path.resolve(path.dirname(absFile), main.quarantine.dir);
  checkSrs(absFile, main);
  checkMilterListeners(absFile, main);
  checkListenerPorts(absFile, main);
  checkListenerAddresses(absFile, main);
  return deepFreeze({ file: absFile, main, banks, hostname, authservId: main.authservId || hostname, trustedNetworks, bankChooser, bankDir });
}

/** services.srs: its secrets file relative to this file; the settings that only make sense together. */
function checkSrs(file: string, main: MainConfig): void {
  const srs = main.services.srs;
  srs.secretsFile = path.resolve(path.dirname(file), srs.secretsFile);
  if (srs.enabled && srs.domain === '')
    throw new PostsealError('CFG_INCONSISTENT', `${file}: /services/srs/domain: the SRS service is enabled but has no domain; set the domain of the rewritten senders`);
  if (srs.hashMin > srs.hashLength)
    throw new PostsealError('CFG_INCONSISTENT', `${file}: /services/srs/hashMin (${srs.hashMin}) is more than hashLength (${srs.hashLength}): our own addresses would not reverse`);
}

/** A milter listener speaks to the MTA in plain text over loopback: STARTTLS has no place there. */
function checkMilterListeners(file: string, main: MainConfig): void {
  main.listeners.forEach((l, i) => {
    if (l.protocol === 'milter' && l.tls)
      throw new PostsealError('CFG_INCONSISTENT', `${file}: /listeners/${i}/tls: a milter listener (port ${l.port}) has no STARTTLS; remove tls or use protocol smtp`);
  });
}

/**
 * Two listeners on one port would not both start (the second bind fails with EADDRINUSE), or in
 * a cluster's worker could share one milter socket and split its sessions between their banks
 * (cluster/shared-sockets.ts): refused here, naming both. Port 0 (tests) binds a new port each.
 */
function checkListenerPorts(file: string, main: MainConfig): void {
  // '::' takes IPv4 too (Node binds it dual-stack); 0.0.0.0 leaves IPv6 addresses such as ::1 free.
  const covers = (w: string, a: string) => w === '::' || (w === '0.0.0.0' && !a.includes(':'));
  const overlap = (a: string, b: string) => a === b || covers(a, b) || covers(b, a);
  main.listeners.forEach((l, i) => {
    const j = main.listeners.findIndex((o, k) => k < i && o.port === l.port && l.port !== 0 && overlap(o.address, l.address));
    if (j >= 0)
      throw new PostsealError(
        'CFG_INCONSISTENT',
        `${file}: /listeners/${i}: port ${l.port} on ${l.address} is already /listeners/${j}'s (${main.listeners[j].address}); give each listener its own port, one socket serves one bank`,
      );
  });
}

/**
 * An address is an IP address or a host name. OpenDKIM's and OpenDMARC's Socket
 * (inet:8891@localhost, local:/run/opendkim/opendkim.sock) and Postfix's [127.0.0.1]:10024
 * would pass `config check` and then fail to bind with a DNS error; refused here with the fix.
 */
function checkListenerAddresses(file: string, main: MainConfig): void {
  main.listeners.forEach((l, i) => {
    // '' is every address (Node listens on :: then), as it was before this check.
    if (l.address === '' || isIP(l.address) || HOST_NAME.test(l.address)) return;
    const socketSpec = /^(inet6?|local|unix):/i.test(l.address) || /^\[.*\](:\d+)?$/.test(l.address);
    const fix = socketSpec
      ? `this is a milter socket or Postfix address (inet:PORT@HOST, local:PATH, [ADDRESS]:PORT); postseal listens on TCP only: write address: 127.0.0.1 and port: ${l.port || 'PORT'} (Postfix: smtpd_milters = inet:127.0.0.1:PORT)`
      : 'write an IP address (127.0.0.1, ::1) or a host name';
    throw new PostsealError('CFG_SCHEMA_INVALID', `${file}: /listeners/${i}/address: "${l.address}" is not an address to listen on; ${fix}`);
  });
}

/**
 * forward.host and notify.host as amavisd's $forward_method or Postfix writes them
 * ([127.0.0.1], 127.0.0.1:10025, smtp:[127.0.0.1]:10025) never resolve: only a warning at
 * start (CFG_FORWARD_UNRESOLVED), then every message of the bank deferred. Refused here.
 */
function checkTargetHosts(file: string, bank: Bank): void {
  for (const key of ['forward', 'notify'] as const) {
    const target = bank[key];
    if (!target || isIP(target.host) || HOST_NAME.test(target.host)) continue;
    throw new PostsealError(
      'CFG_SCHEMA_INVALID',
      `${file}: /${key}/host: "${target.host}" is not a host name or address (amavisd's $forward_method and Postfix write smtp:[127.0.0.1]:10025); write host: 127.0.0.1 and port: 10025 apart`,
    );
  }
}

// Underscores too: resolvers take them, and Docker names containers project_service_1.
const HOST_NAME = /^(?!-)[\w-]{1,63}(?:\.(?!-)[\w-]{1,63})*\.?$/;

/** Validates a bank made in code (a tool's variant of a configured bank) as a bank file would be. */
export function validateBank(schema: object, value: unknown, where: string): Bank {
  let validate = bankValidators.get(schema);
  if (!validate) bankValidators.set(schema, (validate = ajv.compile(schema)));
  const copy = structuredClone(value);
  if (!validate(copy)) throw schemaError(where, validate.errors);
  return deepFreeze(copy as Bank);
}

/** Reads every bank a listener names, each merged over default.yaml. */
function loadBanks(bankDir: string, main: MainConfig, rules: BankRules, ruleBanks: readonly string[], configFile: string): Map<string, Bank> {
  const configDir = path.dirname(configFile);
  let validateBank = bankValidators.get(rules.schema);
  if (!validateBank) bankValidators.set(rules.schema, (validateBank = ajv.compile(rules.schema)));
  const defaultFile = path.join(bankDir, 'default.yaml');
  const base = mappingOrNull(defaultFile, readYaml(defaultFile)) ?? {};
  const names = new Set([...main.listeners.map((l) => l.bank), ...ruleBanks]);
  const present = existsSync(bankDir) ? readdirSync(bankDir).filter((f) => f.endsWith('.yaml')) : [];
  for (const f of present) names.add(f.slice(0, -'.yaml'.length));
  const banks = new Map<string, Bank>();
  for (const name of names) {
    const file = path.join(bankDir, `${name}.yaml`);
    if (name !== 'default' && !existsSync(file)) throw bankMissing(configFile, main, name, file, present);
    const overlay = name === 'default' ? {} : (mappingOrNull(file, readYaml(file)) ?? {});
    const merged = mergeOverlay(structuredClone(base), overlay);
    const where = name === 'default' ? defaultFile : file;
    if (!validateBank(merged)) {
      // A default.yaml that is not there is no error in itself (banks may set everything), but then
      // "default.yaml: missing forward" names a file the postmaster cannot find: say why it is empty.
      if (existsSync(defaultFile)) throw schemaError(where, validateBank.errors);
      const e = schemaError(where, validateBank.errors);
      throw new PostsealError(
        e.code,
        `${e.message}\n${configFile}: /bankDir: ${defaultFile} does not exist${existsSync(bankDir) ? '' : ` (nor the folder ${bankDir})`}, so no bank has its settings: copy the shipped policy-banks/ there (the install does), or set bankDir to the folder of your banks`,
      );
    }
    const bank = merged as Bank;
    rules.check(where, bank);
    checkBank(where, bank, main);
    checkForwardTls(where, bank, configDir);
    checkTargetHosts(where, bank);
    banks.set(name, bank);
  }
  return banks;
}

/** Names where the main file asks for the bank, and the file of another case that was likely meant (bank names are case-sensitive). */
function bankMissing(configFile: string, main: MainConfig, name: string, file: string, present: readonly string[]): PostsealError {
  const i = main.listeners.findIndex((l) => l.bank === name);
  const rules = (['clientNetworks', 'macros', 'senders'] as const).flatMap((k) => main.bankRules[k].map((r, j) => ({ at: `/bankRules/${k}/${j}/bank`, bank: r.bank })));
  const where = i >= 0 ? `/listeners/${i}/bank` : (rules.find((r) => r.bank === name)?.at ?? '/bankRules');
  const other = present.find((f) => f.slice(0, -'.yaml'.length).toLowerCase() === name.toLowerCase());
  const fix = other
    ? `bank names are case-sensitive: write "${other.slice(0, -'.yaml'.length)}" (the file ${other}), or rename the file`
    : 'create it (it may be empty: a bank is an overlay on default.yaml), or name a bank that has a file';
  return new PostsealError('CFG_BANK_MISSING', `${configFile}: ${where}: bank "${name}" has no file ${file}; ${fix}`);
}

function checkBank(file: string, bank: Bank, main: MainConfig): void {
  const n = bank.notices;
  const admins = n.virusAdmin.length + n.bannedAdmin.length + n.spamAdmin.length + n.badHeaderAdmin.length;
  if (!bank.notify && (admins || n.warnVirusRecipient || n.warnBannedRecipient || n.warnBannedSender || n.warnBadHeaderSender))
    throw new PostsealError(
      'CFG_INCONSISTENT',
      `${file}: /notices: notices go through the bank's notify target, and this bank has none; set notify (usually Postfix's reinjection smtpd on 10027)`,
    );
  // A bounce verdict's DSN goes through notify: without it each try is a 451 (NOTIFY_FAILED), and
  // Postfix returns the message itself when it expires in the queue, days later.
  const bouncing = Object.entries(bank).find(
    ([key, section]) => (section as { destiny?: unknown } | null)?.destiny === 'bounce' && bank.stages.includes(key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)),
  );
  if (!bank.notify && bouncing)
    throw new PostsealError(
      'CFG_INCONSISTENT',
      `${file}: /${bouncing[0]}/destiny: bounce sends a DSN through the bank's notify target, and this bank has none (its mail would be deferred until Postfix gives up); set notify (usually Postfix's reinjection smtpd on 10027) or another destiny`,
    );
  if (bank.originating && (n.warnVirusRecipient || n.warnBannedRecipient))
    throw new PostsealError(
      'CFG_INCONSISTENT',
      `${file}: /notices/${n.warnVirusRecipient ? 'warnVirusRecipient' : 'warnBannedRecipient'}: an originating bank's recipients are on other sites, which must not get our notices; set it on an inbound bank`,
    );
  // A forward to our own listener is found by config/preflight.ts, which resolves names.
  const bankName = path.basename(file, '.yaml');
  for (const l of main.listeners.filter((x) => x.bank === bankName)) {
    // A milter listener does not forward: the MTA keeps the message.
    if (l.protocol === 'milter') continue;
    if (bank.forward.protocol === 'lmtp' && l.protocol !== 'lmtp') {
      throw new PostsealError(
        'CFG_INCONSISTENT',
        `${file}: /forward/protocol: lmtp gives one reply per recipient, which an smtp listener (port ${l.port}) cannot pass up; use protocol smtp or make the listener lmtp`,
      );
    }
  }
}

/**
 * forward.tls files: relative to the main file like every other path, and readable now, so a
 * typo stops start-up (or a reload) instead of turning every message into 451 4.7.5.
 */
function checkForwardTls(file: string, bank: Bank, configDir: string): void {
  const t = bank.forward.tls;
  if (!t) return;
  if ((t.certFile === '') !== (t.keyFile === ''))
    throw new PostsealError('CFG_INCONSISTENT', `${file}: /forward/tls: certFile and keyFile go together (a client certificate needs its key)`);
  for (const key of ['caFile', 'certFile', 'keyFile'] as const) {
    if (t[key] === '') continue;
    t[key] = path.resolve(configDir, t[key]);
    if (t.mode === 'none') continue;
    try {
      readFileSync(t[key]);
    } catch (err) {
      throw new PostsealError('CFG_FILE_UNREADABLE', `${file}: /forward/tls/${key}: cannot read ${t[key]}: ${(err as Error).message}`, { cause: err });
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
