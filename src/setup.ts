/**
 * The whole configuration of a postseal: the generic loader (config/load.ts) with the bank
 * schema and checks of the registered stages (stages/registry.ts), plus the signing keys
 * (keys/key-store.ts); and the dependencies every stage gets, built in one place for the
 * daemon and the command-line tools alike (docs/architecture.md, "Layers").
 */
import type { Logger } from 'pino';
import type { Bank } from './config/bank-schema';
import { loadConfigFiles, type ConfigFiles } from './config/load';
import { milterAcceptWarnings } from './config/milter-failure';
import { decodersInstalled, preflight } from './config/preflight';
import type { ConfigWarning } from './errors';
import { keyFileWarnings, loadKeyStore, type KeyStore } from './keys/key-store';
import type { DkimKeyCache } from './lib/dkim/public-keys';
import type { DmarcFailureSink } from './lib/dmarc-report/failure';
import type { DnsResolver } from './lib/dns';
import type { StageDeps } from './pipeline/stage';
import { bankSchema, checkBankStages } from './stages/registry';
import { spamScannerWarnings } from './stages/spam/probe';
import { clamdWarnings } from './stages/virus/probe';
import { checkStoreConfig, storeWarnings } from './store';
import type { DmarcResultStore } from './store/dmarc-results';
import { readSrsSecrets } from './lib/srs/secrets';
import { splitAddress } from './lib/author';
import { loadTemplates, type Templates } from './lib/notice-templates';
import path from 'node:path';
import { ExternalUnpacker, type ProcessSlots } from './lib/archive/external';
import type { ByteBudget } from './lib/archive/memory';

export interface LoadedConfig extends ConfigFiles {
  /** DKIM signing keys and the signing table, parsed once (keys/key-store.ts). */
  readonly keys: KeyStore;
  /** What loading found worth a warning (key file modes); config/preflight.ts adds its own. */
  readonly warnings: readonly ConfigWarning[];
  /** The notice templates (lib/notice-templates.ts): notify.templateDir over the shipped ones. */
  readonly templates: Templates;
  /** notify.from, or postmaster@<hostname>. */
  readonly notifyFrom: string;
}

export function loadConfig(file: string): LoadedConfig {
  const files = loadConfigFiles(file, { schema: bankSchema, check: checkBankStages });
  const keys = loadKeyStore(files.file, files.main.dkimSign);
  const { templateDir, from } = files.main.notify;
  const templates = loadTemplates(templateDir && path.resolve(path.dirname(files.file), templateDir));
  const notifyFrom = from || `postmaster@${files.hostname}`;
  const warnings = [...keyFileWarnings(keys), ...notifyWarnings(files, keys, notifyFrom), ...unusedKeysWarnings(files, keys, notifyFrom), ...milterAcceptWarnings(files)];
  return Object.freeze({ ...files, keys, warnings, templates, notifyFrom });
}

/**
 * Keys in the signing table, but no bank that mail reaches (a listener's, or one bankRules
 * chooses) lists dkim-sign: OpenDKIM signed whatever its milter saw, and a migration that leaves
 * dkim-sign out of ORIGINATING sends every message unsigned, which DMARC p=reject receivers refuse.
 */
function unusedKeysWarnings(files: ConfigFiles, keys: KeyStore, notifyFrom: string): ConfigWarning[] {
  if (!keys.keys.some((k) => k.state === 'active')) return [];
  // Keys kept only for postseal's own mail (DSNs, notices, DMARC reports; notify/sign.ts) are used.
  if (ownMailDomains(files, notifyFrom).some((d) => keys.forAuthor(d).length)) return [];
  const reached = new Set([...files.main.listeners.map((l) => l.bank), ...files.bankChooser.banks]);
  if ([...reached].some((name) => files.banks.get(name)?.stages.includes('dkim-sign'))) return [];
  return [
    {
      code: 'CFG_KEYS_UNUSED',
      message: `${files.file}: /dkimSign: the signing table has active keys, but no bank a listener or bankRules uses (${[...reached].join(', ')}) lists dkim-sign, so no mail is signed; add seven-bit and dkim-sign to the stages of the bank of your users' mail (ORIGINATING, docs/signing.md)`,
    },
  ];
}

/** The domains of the mail postseal writes and signs itself: notify.from's when a bank sends DSNs or notices, the DMARC reports' when they are on. */
function ownMailDomains(files: ConfigFiles, notifyFrom: string): string[] {
  const domains: string[] = [];
  if ([...files.banks.values()].some(sendsNotices)) domains.push(domainOf(notifyFrom));
  const reports = files.main.services.dmarcReports;
  if (reports.enabled || reports.failureReports.enabled) domains.push(domainOf(reports.from || `dmarc-reports@${files.hostname}`));
  return domains;
}

function domainOf(address: string): string {
  return splitAddress(address)?.domain ?? address.slice(address.lastIndexOf('@') + 1).toLowerCase();
}

/**
 * DSNs and notices are signed by postseal with the keys for notify.from's domain: a site that
 * signs (it has keys) but none for that domain, and sends notices (a bank has notify), is warned.
 */
/** Whether a bank can send DSNs or notices from notify.from: a notify target, and a bounce destiny or a notice set up. */
function sendsNotices(bank: Bank): boolean {
  if (!bank.notify) return false;
  const n = bank.notices;
  const notices =
    [n.virusAdmin, n.bannedAdmin, n.spamAdmin, n.badHeaderAdmin].some((l) => l.length > 0) ||
    n.warnVirusRecipient ||
    n.warnBannedRecipient ||
    n.warnBannedSender ||
    n.warnBadHeaderSender;
  const bounces = Object.values(bank as unknown as Record<string, unknown>).some((section) => (section as { destiny?: unknown } | null)?.destiny === 'bounce');
  return notices || bounces;
}

function notifyWarnings(files: ConfigFiles, keys: KeyStore, from: string): ConfigWarning[] {
  const domain = domainOf(from);
  if (keys.size === 0 || ![...files.banks.values()].some(sendsNotices) || keys.forAuthor(domain).length) return [];
  return [
    {
      code: 'CFG_NOTIFY_UNSIGNED',
      message: `${files.file}: /notify/from: the signing table has no key for ${domain}, so DSNs and notices go unsigned; set notify.from to an address of a domain you sign for`,
    },
  ];
}

/**
 * The checks of a loaded configuration that need the file system or DNS: the spool folder
 * and forward loops (config/preflight.ts), the store's file or URL, and (warnings only) the spam
 * scanners' and clamd's PING (stages/spam/probe.ts, stages/virus/probe.ts). Start-up, reload and
 * `config check` run them; the warnings are for the caller to log or print.
 */
export async function checkConfig(config: LoadedConfig, opts: { probeScanners?: boolean } = {}): Promise<ConfigWarning[]> {
  const warnings = await preflight(config);
  checkStoreConfig(config.main.store, config.file);
  if (config.main.services.srs.enabled) readSrsSecrets(config.main.services.srs.secretsFile, `${config.file}: /services/srs/secretsFile: `);
  // A scanner that is down is a warning, not a refusal: Postfix keeps the mail queued on the 451
  // meanwhile. Not probed by a caller that does not log warnings (a cluster's workers: the primary
  // does it once), since clamd's depth probe is a scan, and with AlertExceedsMax clamd logs it as
  // found (and runs its VirusEvent, where one is set).
  if (opts.probeScanners ?? true) warnings.push(...(await spamScannerWarnings(config)), ...(await clamdWarnings(config)), ...(await storeWarnings(config.main.store, config.file)));
  return warnings;
}

/** What outlives a reload: made once at start-up (main.ts) or per command (cli/). */
export interface SharedDeps {
  readonly resolver: DnsResolver;
  readonly dmarcStore: DmarcResultStore;
  /** The failure report queue (services/dmarc-reports), when failure reports are on. */
  readonly dmarcFailures?: DmarcFailureSink;
  /** The process-wide memory budget for unpacking (lib/archive/memory.ts), shared by every bank. */
  readonly unpackMemory?: ByteBudget;
  /** The lsar and unar runs at once (decoders.maxProcesses), shared by every bank. */
  readonly unpackSlots?: ProcessSlots;
}

/** The dependencies of one bank's stages; `dkimKeys` is shared by a configuration's banks (keys parsed once per record). */
export function buildStageDeps(config: LoadedConfig, shared: SharedDeps, bankName: string, log: Logger, dkimKeys: DkimKeyCache): StageDeps {
  return {
    hostname: config.hostname,
    authservId: config.authservId,
    bankName,
    log,
    spool: { dir: config.main.spool.dir, memoryThresholdBytes: config.main.spool.memoryThresholdBytes, headBytes: config.main.spool.maxHeaderBytes },
    keys: config.keys,
    resolver: shared.resolver,
    dkimKeys,
    dmarcStore: shared.dmarcStore,
    dmarcFailures: shared.dmarcFailures,
    unpackMemory: shared.unpackMemory,
    unpacker: externalUnpacker(config, shared),
  };
}

/** lsar and unar as decoders says (use auto: when installed; preflight warned otherwise), or none. */
function externalUnpacker(config: LoadedConfig, shared: SharedDeps): ExternalUnpacker | undefined {
  const d = config.main.decoders;
  if (!shared.unpackSlots || d.use === 'off' || (d.use === 'auto' && !decodersInstalled(d))) return undefined;
  return new ExternalUnpacker(
    { lsar: d.lsarPath, unar: d.unarPath, formats: d.formats, timeoutMs: d.timeoutMs, maxProcesses: d.maxProcesses, tmpDir: config.main.spool.dir },
    shared.unpackSlots,
  );
}

export type { Bank };
