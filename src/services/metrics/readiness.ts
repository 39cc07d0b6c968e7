/**
 * GET /readyz's check: the SMTP listeners are bound, and each bank's forward target
 * (bank key forward.host/forward.port) accepts a TCP connection, and the spam scanners of the
 * banks that list the spam stage answer their ping (stages/spam/probe.ts), and so does the clamd
 * of those that list the virus stage (stages/virus/probe.ts), and Redis when it is the store
 * (store.backend redis: one PING on a connection of its own). The forward probe only connects and
 * closes (Postfix logs a connect/disconnect pair for it); its result is kept for
 * PROBE_CACHE_MS so that a monitor polling /readyz does not open a connection per request,
 * and concurrent requests share one probe.
 */
import net from 'node:net';
import type { LoadedConfig } from '../../setup';
import { probeSpamScanners } from '../../stages/spam/probe';
import { probeClamd } from '../../stages/virus/probe';
import { storeProblem } from '../../store';

/** How long a probe's result stands: a few seconds, far below any monitor's alert delay. */
export const PROBE_CACHE_MS = 5000;
/** A loopback or LAN server answers a connect in well under this. */
const PROBE_TIMEOUT_MS = 2000;

export interface ReadinessDeps {
  /** Why the listeners are not serving (starting, draining, workers missing), or null when they are. */
  listenersDown(): string | null;
  /** The running configuration (changes on reload). */
  config(): LoadedConfig;
  now?: () => number;
}

export interface Readiness {
  /** null when ready, else the reason (plain text). */
  check(): Promise<string | null>;
}

export function createReadiness(deps: ReadinessDeps): Readiness {
  const now = deps.now ?? Date.now;
  let cached: { at: number; config: LoadedConfig; reason: string | null } | undefined;
  let pending: Promise<string | null> | undefined;
  return {
    async check() {
      const down = deps.listenersDown();
      if (down) return down;
      const config = deps.config();
      if (cached && cached.config === config && now() - cached.at < PROBE_CACHE_MS) return cached.reason;
      pending ??= probeTargets(config)
        .then((reason) => {
          cached = { at: now(), config, reason };
          return reason;
        })
        .finally(() => (pending = undefined));
      return pending;
    },
  };
}

/** The reasons of the targets that refused, one per line, or null when all accepted. */
async function probeTargets(config: LoadedConfig): Promise<string | null> {
  const targets = new Map<string, { host: string; port: number; banks: string[] }>();
  const listened = new Set(config.main.listeners.map((l) => l.bank));
  for (const [name, bank] of config.banks) {
    if (!listened.has(name)) continue;
    const key = `${bank.forward.host}:${bank.forward.port}`;
    const t = targets.get(key) ?? { host: bank.forward.host, port: bank.forward.port, banks: [] };
    t.banks.push(name);
    targets.set(key, t);
  }
  const banks = [...config.banks].filter(([name]) => listened.has(name));
  const scanners = Promise.all([probeSpamScanners(banks), probeClamd(banks)]).then((lines) => lines.flat());
  const store = storeProblem(config.main.store);
  const failures = await Promise.all(
    [...targets.values()].map(async (t) => {
      const why = await connects(t.host, t.port);
      return why ? `bank ${t.banks.join(', ')}: forward target ${t.host}:${t.port} ${why}` : null;
    }),
  );
  const storeDown = await store;
  const reasons = [...failures.filter((f): f is string => f !== null), ...(await scanners), ...(storeDown ? [`store: ${storeDown}`] : [])];
  return reasons.length ? reasons.join('\n') : null;
}

/** null when the connection opened, else what happened. */
function connects(host: string, port: number): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (why: string | null) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(why);
    };
    const timer = setTimeout(() => done(`did not accept a connection within ${PROBE_TIMEOUT_MS} ms`), PROBE_TIMEOUT_MS);
    socket.once('connect', () => done(null));
    socket.once('error', (err: NodeJS.ErrnoException) => done(`refused the connection (${err.code ?? err.message})`));
  });
}
