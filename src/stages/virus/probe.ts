/**
 * Is the clamd the virus stage will ask alive? clamd answers zPING with PONG. Asked for every
 * bank that lists the virus stage, each clamd once: at start-up and reload (setup.ts
 * checkConfig: a warning, CFG_VIRUS_SCANNER_NOT_ANSWERING, not a refusal to start, since
 * Postfix keeps the mail queued on the 451 a scan would give) and by GET /readyz
 * (services/metrics/readiness.ts, with its probe caching), as stages/spam/probe.ts does for
 * spamd and rspamd. With virus.keepConnections above 0 it also asks PING inside an IDSESSION,
 * which the kept connections need. Reads: virus.socket, virus.host, virus.port,
 * virus.connectTimeoutMs, virus.keepConnections of each bank. Never throws.
 */
import type { Bank } from '../../config/bank-schema';
import type { ConfigWarning } from '../../errors';
import type { ClamdClient } from '../../lib/clamd';
import { clientFor } from './clamd';
import type { VirusSettings } from './schema';

/** A loopback or LAN clamd answers PING in well under this, even while it scans. */
const PING_TIMEOUT_MS = 2000;

function targets(banks: Iterable<readonly [string, Bank]>): { readonly client: ClamdClient; readonly banks: string[] }[] {
  const out = new Map<string, { client: ClamdClient; banks: string[] }>();
  for (const [name, bank] of banks) {
    if (!bank.stages.includes('virus')) continue;
    const client = clientFor(bank.virus as VirusSettings, PING_TIMEOUT_MS);
    // Banks that keep connections and banks that do not are probed apart (the session check differs).
    const key = `${client.name} ${client.options.keepConnections ? 'sessions' : 'single'}`;
    const t = out.get(key) ?? { client, banks: [] };
    t.banks.push(name);
    out.set(key, t);
  }
  return [...out.values()];
}

/** One line per clamd that did not answer PING, naming the banks that use it; empty when all did. */
export async function probeClamd(banks: Iterable<readonly [string, Bank]>): Promise<string[]> {
  const results = await Promise.all(
    targets(banks).map(async (t) => {
      const r = await t.client.ping();
      if (r.kind !== 'pong') return `bank ${t.banks.join(', ')}: ${t.client.name} did not answer PING (${r.reason}: ${r.detail})`;
      if (!t.client.options.keepConnections) return null;
      // Kept connections are IDSESSIONs: a scanner without them would fail every scan.
      const s = await t.client.pingInSession();
      return s.kind === 'pong'
        ? null
        : `bank ${t.banks.join(', ')}: ${t.client.name} answers PING but not inside an IDSESSION (${s.reason}: ${s.detail}); set virus.keepConnections: 0 for a scanner without sessions`;
    }),
  );
  return results.filter((r): r is string => r !== null);
}

/** The start-up and reload check: a warning per clamd that does not answer. */
export async function clamdWarnings(config: { readonly file: string; readonly banks: ReadonlyMap<string, Bank> }): Promise<ConfigWarning[]> {
  const down = await probeClamd(config.banks);
  return down.map((why) => ({
    code: 'CFG_VIRUS_SCANNER_NOT_ANSWERING',
    message: `${config.file}: ${why}; its mail is not scanned and meets virus.onScannerFailure (451 by default) until it answers`,
  }));
}
