/**
 * Asks the scanners a bank enables (spam.spamd, spam.rspamd) at the same time and combines
 * their answers into one score and one level, which is what the verdict reads:
 *
 * - the score is the higher of the two (each scanner's own judgement counts in full: averaging
 *   would let a message that one of them is sure about slip under the kill level);
 * - with spam.rspamd.honourAction, rspamd's action raises the level: reject to kill, add header
 *   and rewrite subject to tag2 (spamd has no action of its own: its required_score is only
 *   logged, the bank's levels decide);
 * - the rules of both are listed, spamd's first.
 *
 * A scanner that fails is reported by name with its error; the other one's answer still counts.
 * Reads: spam.spamd.*, spam.rspamd.*, the levels. Fails: never throws for a scanner; an aborted
 * signal is returned as that scanner's failure.
 */
import net from 'node:net';
import type { RspamdClient, RspamdEnvelope, RspamdResult } from '../../lib/rspamd/client';
import { spamdCheck, type ScanSource, type SpamdResult, type SpamSymbol } from '../../lib/spamd/client';
import type { Transaction } from '../../transaction/transaction';
import type { SpamSettings } from './schema';

export type Level = 'clean' | 'tag' | 'tag2' | 'kill';

/** Far beyond any level the schema allows (9999). */
const MAX_SCORE = 99999;

export interface Combined {
  readonly score: number;
  readonly tests: readonly SpamSymbol[];
  readonly level: Level;
  /** The scanners' own words for the log: "spamd=1003.5/5 rspamd=15/reject". */
  readonly summary: string;
  /** Scanners that failed, with why. */
  readonly failures: readonly string[];
  /** Whether any scanner answered. */
  readonly scanned: boolean;
}

export interface Scanners {
  readonly rspamd?: RspamdClient;
}

export async function scanMessage(settings: SpamSettings, scanners: Scanners, tx: Readonly<Transaction>, signal: AbortSignal): Promise<Combined> {
  const source: ScanSource = { size: tx.message.size, open: () => tx.message.openRaw() };
  const { spamd, rspamd } = settings;
  const asks: [Promise<SpamdResult> | undefined, Promise<RspamdResult> | undefined] = [
    spamd.enabled
      ? spamdCheck(
          {
            socket: spamd.socket || undefined,
            host: spamd.host,
            port: spamd.port,
            timeoutMs: spamd.timeoutMs,
            command: spamd.command === 'symbols' ? 'SYMBOLS' : 'REPORT',
            user: spamd.user,
          },
          source,
          signal,
        )
      : undefined,
    rspamd.enabled && scanners.rspamd ? scanners.rspamd.check(source, rspamdEnvelope(settings, tx), signal) : undefined,
  ];
  const [s, r] = await Promise.allSettled(asks.map((p) => p ?? Promise.resolve(undefined)));
  const failures: string[] = [];
  const words: string[] = [];
  const tests: SpamSymbol[] = [];
  let score = Number.NEGATIVE_INFINITY;
  let fromAction: Level = 'clean';
  if (s.status === 'rejected') failures.push(why(s.reason));
  else if (s.value) {
    const v = s.value as SpamdResult;
    score = v.score;
    tests.push(...v.symbols);
    words.push(`spamd=${v.score}/${v.required}`);
  }
  if (r.status === 'rejected') failures.push(why(r.reason));
  else if (r.value) {
    const v = r.value as RspamdResult;
    score = Math.max(score, v.score);
    tests.push(...v.symbols);
    words.push(`rspamd=${v.score}/${v.required}/${v.action.replace(' ', '_')}`);
    if (rspamd.honourAction) fromAction = v.action === 'reject' ? 'kill' : v.action === 'add header' || v.action === 'rewrite subject' ? 'tag2' : 'clean';
  }
  const scanned = words.length > 0;
  if (!scanned) return { score: 0, tests: [], level: 'clean', summary: '', failures, scanned };
  // A score beyond any threshold is clamped, so that it always prints as a plain number (headers.ts).
  score = Math.max(-MAX_SCORE, Math.min(MAX_SCORE, score));
  const byScore: Level = score >= settings.killLevel ? 'kill' : score >= settings.tag2Level ? 'tag2' : score >= settings.tagLevel ? 'tag' : 'clean';
  return { score, tests, level: higher(byScore, fromAction), summary: words.join(' '), failures, scanned };
}

const ORDER: readonly Level[] = ['clean', 'tag', 'tag2', 'kill'];

function higher(a: Level, b: Level): Level {
  return ORDER.indexOf(a) >= ORDER.indexOf(b) ? a : b;
}

function why(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** What rspamd is told: the envelope, and the client as Postfix's XFORWARD named it (when it did). */
function rspamdEnvelope(settings: SpamSettings, tx: Readonly<Transaction>): RspamdEnvelope {
  const addr = tx.client.addr?.replace(/^IPv6:/i, '');
  const name = tx.client.name;
  return {
    from: tx.envelope.mailFrom,
    rcpt: tx.envelope.recipients.map((r) => r.address),
    ip: addr && net.isIP(addr) ? addr : undefined,
    helo: tx.client.helo && tx.client.helo !== '[UNAVAILABLE]' ? tx.client.helo : undefined,
    hostname: name && name !== '[UNAVAILABLE]' && name !== 'unknown' ? name : undefined,
    queueId: tx.queueId,
    settingsId: settings.rspamd.settingsId || undefined,
    passAll: settings.rspamd.passAll,
  };
}
