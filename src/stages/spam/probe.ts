/**
 * Are the scanners the spam stage will ask alive? spamd answers PING with PONG, rspamd GET
 * /ping with "pong". Asked for every bank that lists the spam stage, each endpoint once:
 * at start-up and reload (setup.ts checkConfig: a warning, CFG_SPAM_SCANNER_NOT_ANSWERING,
 * not a refusal to start, since Postfix keeps the mail queued on the 451 a scan would give)
 * and by GET /readyz (services/metrics/readiness.ts, with its probe caching).
 * Reads: spam.spamd.*, spam.rspamd.* of each bank. Never throws.
 */
import type { Bank } from '../../config/bank-schema';
import type { ConfigWarning } from '../../errors';
import { createRspamdClient } from '../../lib/rspamd/client';
import { describeEndpoint, spamdPing } from '../../lib/spamd/client';
import type { SpamSettings } from './schema';

/** A loopback or LAN scanner answers a ping in well under this (a busy spamd may queue it briefly). */
const PING_TIMEOUT_MS = 2000;

interface Target {
  readonly what: 'spamd' | 'rspamd';
  readonly where: string;
  readonly banks: string[];
  readonly ping: () => Promise<void>;
}

function targets(banks: Iterable<readonly [string, Bank]>): Target[] {
  const out = new Map<string, Target>();
  const add = (name: string, what: Target['what'], where: string, ping: Target['ping']) => {
    const key = `${what} ${where}`;
    const t = out.get(key) ?? { what, where, banks: [], ping };
    t.banks.push(name);
    out.set(key, t);
  };
  for (const [name, bank] of banks) {
    if (!bank.stages.includes('spam')) continue;
    const s = bank.spam as SpamSettings;
    const sa = { socket: s.spamd.socket || undefined, host: s.spamd.host, port: s.spamd.port };
    if (s.spamd.enabled) add(name, 'spamd', describeEndpoint(sa), () => spamdPing(sa, PING_TIMEOUT_MS));
    const rs = { socket: s.rspamd.socket || undefined, host: s.rspamd.host, port: s.rspamd.port };
    if (s.rspamd.enabled)
      add(name, 'rspamd', describeEndpoint(rs), async () => {
        const client = createRspamdClient({ ...rs, timeoutMs: PING_TIMEOUT_MS });
        try {
          await client.ping();
        } finally {
          client.close();
        }
      });
  }
  return [...out.values()];
}

/** One line per scanner that did not answer, naming the banks that use it; empty when all did. */
export async function probeSpamScanners(banks: Iterable<readonly [string, Bank]>): Promise<string[]> {
  return (await probeTargets(banks)).map((d) => d.line);
}

async function probeTargets(banks: Iterable<readonly [string, Bank]>): Promise<{ line: string; target: Target }[]> {
  const results = await Promise.all(
    targets(banks).map(async (t) => {
      try {
        await t.ping();
        return null;
      } catch (err) {
        return { line: `bank ${t.banks.join(', ')}: ${t.what} ${t.where} did not answer its ping (${(err as Error).message})`, target: t };
      }
    }),
  );
  return results.filter((r) => r !== null);
}

/** The bank key that names the scanner, and where its own configuration says it listens. */
const HINTS: Record<Target['what'], string> = {
  spamd:
    "check /spam/spamd (socket, or host and port) against spamd's --listen or --socketpath (Debian: OPTIONS in /etc/default/spamd, port 783), and that spamd runs (systemctl status spamd)",
  rspamd: "check /spam/rspamd (socket, or host and port) against the bind_socket of rspamd's normal worker (port 11333), and that rspamd runs (systemctl status rspamd)",
};

/** The start-up and reload check: a warning per scanner that does not answer. */
export async function spamScannerWarnings(config: { readonly file: string; readonly banks: ReadonlyMap<string, Bank> }): Promise<ConfigWarning[]> {
  const down = await probeTargets(config.banks);
  return down.map((d) => ({
    code: 'CFG_SPAM_SCANNER_NOT_ANSWERING',
    message: `${config.file}: ${d.line}; spam checks of its mail tempfail (451) until it answers: ${HINTS[d.target.what]}`,
  }));
}
