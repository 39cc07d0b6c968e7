/**
 * Start-up and wiring (STYLE.md §10, docs/architecture.md "Lifecycle"): the dependencies that
 * outlive a reload (the state store and the DMARC results in it, the resolver and its cache
 * while its settings stay) are made once; the quarantine (src/quarantine/) is remade from each
 * configuration on the same store, and its sweeper starts first (it creates the folder); the store is opened before the services and closed
 * after them (a changed `store` section applies at the next start); each
 * bank gets its pipeline (stages from stages/registry.ts) and downstream pool; the services
 * (the SMTP listeners, then the side services) start in order, reload together on SIGHUP and
 * close in reverse on SIGTERM. Start and reload first run config/preflight.ts (spool folder,
 * forward loops), logging its warnings. Signals are wired by the `start` command, not here,
 * so tests run several instances in one process.
 */
import type { MainConfig } from './config/main-schema';
import { PostsealError } from './errors';
import { DkimKeyCache } from './lib/dkim/public-keys';
import type { DmarcFailureSink } from './lib/dmarc-report/failure';
import { createDnsResolver } from './lib/dns';
import type { Logger } from './lib/log';
import type { Telemetry } from './lib/telemetry';
import type { ListenSockets } from './listener/listen-sockets';
import type { Listener } from './listener/listener';
import { createSmtpService } from './listener/service';
import type { SessionContext } from './listener/session';
import { createPipeline, type Pipeline } from './pipeline/runner';
import { domainOf } from './notify/rate';
import { reportSigner } from './notify/sign';
import { DownstreamPool } from './reinject/pool';
import { Quarantine } from './quarantine/quarantine';
import { QuarantineSweeper } from './quarantine/sweeper';
import { DmarcFailureReportsService, DmarcReportsService } from './services/dmarc-reports';
import { checkPolicyConfig, PolicyService } from './services/policy';
import { closeAll, startAll, type Service } from './services/service';
import { SrsService } from './services/srs';
import { buildStageDeps, checkConfig as checkLoaded, type LoadedConfig, type SharedDeps } from './setup';
import { stageRegistry } from './stages/registry';
import { openStore, type Store } from './store';
import { StoredDmarcResults, dmarcResultsNotKept, type DmarcResultStore } from './store/dmarc-results';
import { sweepStaleSpools } from './transaction/spool';
import { ProcessSlots } from './lib/archive/external';
import { ByteBudget } from './lib/archive/memory';

export interface Postseal {
  readonly listeners: readonly Listener[];
  /** Port of the listener for a bank (first match), for tests and tools. */
  portOf(bank: string): number;
  /** Applies a newly loaded config to every service; throws (keeping the running one) if it cannot. */
  reload(config: LoadedConfig): Promise<void>;
  /** Drains: stops accepting, finishes mail in flight within shutdownGraceMs, closes everything. */
  close(): Promise<void>;
}

export interface StartOptions {
  /** Log the configuration's warnings (a cluster's primary logs them once, for all its workers). */
  logWarnings?: boolean;
  /** Where the message path reports what it did (services/metrics); nothing by default. */
  telemetry?: Telemetry;
  /** Where milter listeners get their sockets (a cluster's worker: from the primary, cluster/shared-sockets.ts); their own by default. */
  sockets?: ListenSockets;
}

export async function startPostseal(config: LoadedConfig, log: Logger, opts: StartOptions = {}): Promise<Postseal> {
  await checkConfig(config, log, opts.logWarnings ?? true);
  const stale = await sweepStaleSpools(config.main.spool.dir);
  if (stale.length) log.warn({ files: stale }, 'removed spool files of postseal processes that died');
  const store = await openStore(config.main.store, config.file, log);
  const reports = config.main.services.dmarcReports;
  const dmarcStore = new StoredDmarcResults(store, {
    maxDomainsPerDay: reports.maxDomainsPerDay,
    maxPeriodsPerOrgDomain: reports.maxPeriodsPerOrgDomain,
    maxPerPeriod: reports.maxRowsPerReport,
    maxRecordsPerDay: reports.maxRecordsPerDay,
    minIntervalSec: reports.minIntervalSec,
    log,
  });
  // Made before the pipelines, which queue failure reports in it; started with the services.
  const failures = reports.failureReports.enabled
    ? new DmarcFailureReportsService(config, {
        store,
        log: log.child({ service: 'dmarc-failure-reports' }),
        get resolver() {
          return shared.resolver;
        },
      })
    : undefined;
  // Results are kept only for a report sender started with them (a reload does not start one):
  // with aggregate reports off (the default) nothing about senders is stored.
  const kept: DmarcResultStore = reports.enabled ? dmarcStore : dmarcResultsNotKept;
  let shared = sharedDeps(config.main.dns, kept, failures, opts.telemetry);
  let dns = JSON.stringify(config.main.dns);
  const quarantineLog = log.child({ service: 'quarantine' });
  const quarantineOf = (c: LoadedConfig) => new Quarantine(c.main.quarantine, store, quarantineLog);
  // `shared` is read when contexts are built, so a reload gets the resolver it made.
  const smtp = createSmtpService(config, { build: (c) => buildContexts(c, shared, log, opts.telemetry, quarantineOf(c), store), close: closePools }, log, opts.sockets);
  const sweeper = new QuarantineSweeper(quarantineOf(config), quarantineOf, quarantineLog);
  // The failure report queue closes after the listeners, which may still offer reports while they drain.
  const services: Service[] = failures ? [sweeper, failures, smtp] : [sweeper, smtp];
  if (config.main.services.srs.enabled) services.push(new SrsService(config, { log, telemetry: opts.telemetry }));
  // The policy service runs in every worker (the cluster shares its socket); its state is in the store.
  if (config.main.services.policy.enabled) {
    services.push(
      new PolicyService(config, {
        store,
        log: log.child({ service: 'policy' }),
        now: Date.now,
        telemetry: opts.telemetry,
        get resolver() {
          return shared.resolver;
        },
      }),
    );
  }
  // The report sender runs in every worker; the store decides who sends each report (services/dmarc-reports).
  if (config.main.services.dmarcReports.enabled) {
    services.push(
      new DmarcReportsService(config, {
        store,
        results: dmarcStore,
        log: log.child({ service: 'dmarc-reports' }),
        get resolver() {
          return shared.resolver;
        },
      }),
    );
  }
  try {
    await startAll(services);
  } catch (err) {
    await store.close();
    throw err;
  }
  let running = config;
  return {
    get listeners() {
      return smtp.listeners;
    },
    portOf: (bank) => smtp.portOf(bank),
    async reload(next) {
      await checkConfig(next, log, opts.logWarnings ?? true);
      // The resolver and its cache stay unless its settings changed; the store always stays.
      if (JSON.stringify(next.main.dns) !== dns) {
        shared = sharedDeps(next.main.dns, kept, failures, opts.telemetry);
        dns = JSON.stringify(next.main.dns);
      }
      if (next.main.services.dmarcReports.failureReports.enabled && !failures) {
        log.warn({ config: next.file }, 'DMARC failure reports were enabled; they start at the next start (a reload can only stop them)');
      }
      if (JSON.stringify(next.main.store) !== JSON.stringify(running.main.store)) {
        log.warn({ config: next.file }, 'store settings changed; they apply at the next start, the running store stays open');
      }
      for (const s of services) await s.reload(next);
      running = next;
      log.info({ file: next.file }, 'configuration reloaded');
    },
    async close() {
      try {
        await closeAll(services);
      } finally {
        await store.close();
      }
    },
  };
}

/**
 * Bytes the banned stage may hold whole at once across all messages (lib/archive/memory.ts):
 * eight archives at the default maxMemberBytes (32 MiB); a reservation waits at most
 * UNPACK_WAIT_MS, then the message is tempfailed. docs/content-checks.md "Memory across messages".
 */
const UNPACK_MEMORY_BYTES = 256 * 1024 * 1024;
const UNPACK_WAIT_MS = 10_000;

function sharedDeps(dns: MainConfig['dns'], dmarcStore: DmarcResultStore, dmarcFailures: DmarcFailureSink | undefined, telemetry?: Telemetry): SharedDeps {
  return {
    resolver: createDnsResolver(dns, telemetry ? { telemetry } : {}),
    dmarcStore,
    dmarcFailures,
    unpackMemory: new ByteBudget(UNPACK_MEMORY_BYTES, UNPACK_WAIT_MS),
    unpackSlots: new ProcessSlots(),
  };
}

/** Spool folder, forward loops, store (setup.ts checkConfig); throws, refusing the start or the reload. */
async function checkConfig(config: LoadedConfig, log: Logger, logWarnings: boolean): Promise<void> {
  checkSignerBanks(config);
  // Before any service reloads: the policy service refusing the new configuration after the
  // SMTP listeners took it left the daemon half on each (and logging "keeping the running one").
  checkPolicyConfig(config);
  const warnings = await checkLoaded(config, { probeScanners: logWarnings });
  if (logWarnings) for (const w of warnings) log.warn({ code: w.code, config: config.file }, w.message);
}

function buildContexts(config: LoadedConfig, shared: SharedDeps, log: Logger, telemetry: Telemetry | undefined, quarantine: Quarantine, store: Store): Map<string, SessionContext> {
  const contexts = new Map<string, SessionContext>();
  const pipelines = new Map<string, Pipeline>();
  // DKIM keys parsed once per record for every bank of this configuration.
  const dkimKeys = new DkimKeyCache();
  // DSNs and notices are signed here: the notify target (10027) comes after postseal's signing.
  const notifySigner = reportSigner(config.keys.forAuthor(domainOf(config.notifyFrom) ?? ''), () => new Date());
  for (const [name, bank] of config.banks) {
    const bankLog = log.child({ bank: name });
    const deps = buildStageDeps(config, shared, name, bankLog, dkimKeys);
    const pipeline = createPipeline(name, bank, stageRegistry, deps, (other) => pipelines.get(other));
    pipelines.set(name, pipeline);
    contexts.set(name, {
      bank,
      hostname: config.hostname,
      log: bankLog,
      trustedNetworks: config.trustedNetworks,
      pool: new DownstreamPool(bank.forward, bank.forward.heloName || config.hostname, bankLog),
      pipeline,
      spool: deps.spool,
      shutdownGraceMs: config.main.shutdownGraceMs,
      telemetry,
      bankChooser: config.bankChooser,
      contextOf: (other) => contexts.get(other),
      quarantine,
      // Connects only when a bounce verdict sends a DSN; a bank with a bounce destiny and no notify target is refused at load (config/load.ts).
      bounce: bank.notify && {
        pool: new DownstreamPool(bank.notify, bank.notify.heloName || config.hostname, bankLog),
        store,
        hostname: config.hostname,
        log: bankLog,
        from: config.notifyFrom,
        sign: notifySigner,
        limits: config.main.notify,
        templates: config.templates,
      },
    });
  }
  return contexts;
}

/** A signer-based bank that does not exist would be noticed only when such mail arrives. */
function checkSignerBanks(config: LoadedConfig): void {
  for (const [name, bank] of config.banks) {
    const signerBanks = (bank.dkimVerify as { signerBanks?: readonly { signer: string; bank: string }[] } | undefined)?.signerBanks ?? [];
    for (const m of signerBanks) {
      if (!config.banks.has(m.bank))
        throw new PostsealError('CFG_BANK_MISSING', `bank "${name}": /dkimVerify/signerBanks: bank "${m.bank}" (for signer ${m.signer}) has no file; create ${m.bank}.yaml`);
    }
  }
}

async function closePools(contexts: Map<string, SessionContext>): Promise<void> {
  await Promise.all([...contexts.values()].flatMap((c) => [c.pool.close(), ...(c.bounce ? [c.bounce.pool.close()] : [])]));
}
