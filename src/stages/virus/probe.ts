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
import { type Stats, statSync } from 'node:fs';
import type { Bank } from '../../config/bank-schema';
import type { ConfigWarning } from '../../errors';
import type { ClamdClient } from '../../lib/clamd';
import { clientFor } from './clamd';
import type { VirusSettings } from './schema';

/** A loopback or LAN clamd answers PING in well under this, even while it scans. */
const PING_TIMEOUT_MS = 2000;

interface Target {
  readonly client: ClamdClient;
  readonly settings: VirusSettings;
  readonly banks: string[];
}

function targets(banks: Iterable<readonly [string, Bank]>): Target[] {
  const out = new Map<string, Target>();
  for (const [name, bank] of banks) {
    if (!bank.stages.includes('virus')) continue;
    const settings = bank.virus as VirusSettings;
    const client = clientFor(settings, PING_TIMEOUT_MS);
    // Banks that keep connections and banks that do not are probed apart (the session check differs).
    const key = `${client.name} ${client.options.keepConnections ? 'sessions' : 'single'}`;
    const t = out.get(key) ?? { client, settings, banks: [] };
    t.banks.push(name);
    out.set(key, t);
  }
  return [...out.values()];
}

/** Why this clamd cannot take scans (no PING answer, or none inside an IDSESSION it needs), or null; `pinged`: it answered PING. */
async function notAnswering(t: Target): Promise<{ line: string; pinged: boolean } | null> {
  const r = await t.client.ping();
  if (r.kind !== 'pong') return { line: `bank ${t.banks.join(', ')}: ${t.client.name} did not answer PING (${r.reason}: ${r.detail})`, pinged: false };
  if (!t.client.options.keepConnections) return null;
  // Kept connections are IDSESSIONs: a scanner without them would fail every scan.
  const s = await t.client.pingInSession();
  return s.kind === 'pong'
    ? null
    : {
        line: `bank ${t.banks.join(', ')}: ${t.client.name} answers PING but not inside an IDSESSION (${s.reason}: ${s.detail}); set virus.keepConnections: 0 for a scanner without sessions`,
        pinged: true,
      };
}

/** One line per clamd that did not answer PING, naming the banks that use it; empty when all did. */
export async function probeClamd(banks: Iterable<readonly [string, Bank]>): Promise<string[]> {
  const results = await Promise.all(targets(banks).map(notAnswering));
  return results.filter((r) => r !== null).map((r) => r.line);
}

/**
 * What to look at when clamd does not answer: the bank key that names it and, for a unix
 * socket, what is at that path (nothing: clamav-daemon not running or another LocalSocket; a
 * file that is no socket; a socket postseal's user may not open).
 */
function socketHint(s: VirusSettings, line: string): string {
  if (!s.socket) return `; check /virus/host and /virus/port (${s.host}:${s.port}) against clamd.conf TCPAddr and TCPSocket, and that clamav-daemon runs`;
  let st: Stats;
  try {
    st = statSync(s.socket);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') return `; /virus/socket ${s.socket}: ${code}`;
    return `; /virus/socket: nothing is at ${s.socket}: start clamav-daemon (systemctl status clamav-daemon), or set virus.socket to the LocalSocket of clamd.conf (Debian: /var/run/clamav/clamd.ctl)`;
  }
  if (!st.isSocket()) return `; /virus/socket: ${s.socket} is not a socket: set virus.socket to the LocalSocket of clamd.conf (Debian: /var/run/clamav/clamd.ctl)`;
  if (line.includes('EACCES'))
    return `; /virus/socket: postseal's user may not open ${s.socket}: add it to clamd's group (adduser postseal clamav), or set LocalSocketMode 666 in clamd.conf`;
  return `; /virus/socket: ${s.socket} is a socket no clamd answers on (left by a clamd that stopped?): start clamav-daemon`;
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
            message: `${config.file}: ${down.line}; its mail is not scanned and meets virus.onScannerFailure (451 by default) until it answers${down.pinged ? '' : socketHint(t.settings, down.line)}`,
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
