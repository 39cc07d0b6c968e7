/**
 * Is the clamd the virus stage will ask alive? clamd answers zPING with PONG. Asked for every
 * bank that lists the virus stage, each clamd once: at start-up and reload (setup.ts
 * checkConfig: a warning, CFG_VIRUS_SCANNER_NOT_ANSWERING, not a refusal to start, since
 * Postfix keeps the mail queued on the 451 a scan would give) and by GET /readyz
 * (services/metrics/readiness.ts, with its probe caching), as stages/spam/probe.ts does for
 * spamd and rspamd. With virus.keepConnections above 0 it also asks PING inside an IDSESSION,
 * which the kept connections need. Reads: virus.socket, virus.host, virus.port,
 * virus.connectTimeoutMs, virus.keepConnections of each bank. Never throws.
 *
 * At start-up and reload it also sends each clamd that answered a message nested 200 MIME levels
 * deep: one that answers OK has AlertExceedsMax off (Debian's default) and calls clean whatever
 * lies past its MaxRecursion, an archive nested deeper included, which postseal cannot see into
 * on a bank without the banned stage (CFG_VIRUS_SCANNER_PASSES_DEEP, a warning).
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

type Target = ReturnType<typeof targets>[number];

/** Why this clamd cannot take scans (no PING answer, or none inside an IDSESSION it needs), or null. */
async function notAnswering(t: Target): Promise<string | null> {
  const r = await t.client.ping();
  if (r.kind !== 'pong') return `bank ${t.banks.join(', ')}: ${t.client.name} did not answer PING (${r.reason}: ${r.detail})`;
  if (!t.client.options.keepConnections) return null;
  // Kept connections are IDSESSIONs: a scanner without them would fail every scan.
  const s = await t.client.pingInSession();
  return s.kind === 'pong'
    ? null
    : `bank ${t.banks.join(', ')}: ${t.client.name} answers PING but not inside an IDSESSION (${s.reason}: ${s.detail}); set virus.keepConnections: 0 for a scanner without sessions`;
}

/** One line per clamd that did not answer PING, naming the banks that use it; empty when all did. */
export async function probeClamd(banks: Iterable<readonly [string, Bank]>): Promise<string[]> {
  const results = await Promise.all(targets(banks).map(notAnswering));
  return results.filter((r): r is string => r !== null);
}

/**
 * MIME nested this deep: past any MaxRecursion a site sets (clamd's default is 17; MIME and
 * archive levels count together). clamd with AlertExceedsMax answers
 * `Heuristics.Limits.Exceeded.MaxRecursion FOUND` for it, without it `OK` (measured: the same
 * answers at 20 levels, and for EICAR in a zip nested 20 deep).
 */
const DEPTH_PROBE_LEVELS = 200;

function deepProbe(): Buffer {
  let part = 'Content-Type: text/plain; charset=us-ascii\r\n\r\nA depth probe of postseal: nothing to find.\r\n';
  for (let i = DEPTH_PROBE_LEVELS; i > 0; i--) part = `Content-Type: multipart/mixed; boundary="probe-${i}"\r\n\r\n--probe-${i}\r\n${part}--probe-${i}--\r\n`;
  return Buffer.from(`From: <depth-probe@postseal.invalid>\r\nSubject: postseal depth probe\r\nMIME-Version: 1.0\r\n${part}`);
}

/** Why this clamd, which answers, calls a message nested past its MaxRecursion clean, or null. */
async function passesDeep(t: Target, probe: Buffer): Promise<string | null> {
  // Within the probe's PING_TIMEOUT_MS: a clamd too busy to answer gets no warning, rightly or not.
  const r = await t.client.scan(async function* () {
    yield probe;
  });
  if (r.kind !== 'clean') return null;
  return `bank ${t.banks.join(', ')}: ${t.client.name} answers OK for a message nested ${DEPTH_PROBE_LEVELS} levels deep, so it calls clean what lies past its MaxRecursion (17 by default): EICAR in a zip nested 20 levels deep passes a bank without the banned stage as VIRUS_CLEAN; set "AlertExceedsMax yes" in clamd.conf (nesting past it is then VIRUS_FOUND, Heuristics.Limits.Exceeded.MaxRecursion; past its size limits, VIRUS_NOT_SCANNED_TOO_BIG)`;
}

/** The start-up and reload check: a warning per clamd that does not answer, or that calls deep nesting clean. */
export async function clamdWarnings(config: { readonly file: string; readonly banks: ReadonlyMap<string, Bank> }): Promise<ConfigWarning[]> {
  const probe = deepProbe();
  const found = await Promise.all(
    targets(config.banks).map(async (t): Promise<ConfigWarning | null> => {
      try {
        const down = await notAnswering(t);
        if (down)
          return {
            code: 'CFG_VIRUS_SCANNER_NOT_ANSWERING',
            message: `${config.file}: ${down}; its mail is not scanned and meets virus.onScannerFailure (451 by default) until it answers`,
          };
        const deep = await passesDeep(t, probe);
        return deep ? { code: 'CFG_VIRUS_SCANNER_PASSES_DEEP', message: `${config.file}: ${deep}` } : null;
      } finally {
        // The probe's scan may have left a kept connection (virus.keepConnections).
        t.client.close();
      }
    }),
  );
  return found.filter((w): w is ConfigWarning => w !== null);
}
