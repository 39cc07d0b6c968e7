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
  const results = await Promise.all(
    targets(banks).map(async (t) => {
      try {
        await t.ping();
        return null;
      } catch (err) {
        return `bank ${t.banks.join(', ')}: ${t.what} ${t.where} did not answer its ping (${(err as Error).message})`;
      }
    }),
  );
  return results.filter((r): r is string => r !== null);
}

/** The start-up and reload check: a warning per scanner that does not answer. */
export async function spamScannerWarnings(config: { readonly file: string; readonly banks: ReadonlyMap<string, Bank> }): Promise<ConfigWarning[]> {
  const down = await probeSpamScanners(config.banks);
  return down.map((why) => ({ code: 'CFG_SPAM_SCANNER_NOT_ANSWERING', message: `${config.file}: ${why}; spam checks of its mail tempfail (451) until it answers` }));
}
