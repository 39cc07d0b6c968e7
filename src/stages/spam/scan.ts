/**
 * Asks the scanners a bank enables (spam.spamd, spam.rspamd) at the same time and combines
 * their answers into one score and one level, which is what the verdict reads:
 *
 * - the score is the higher of the two (each scanner's own judgement counts in full: averaging
 *   would let a message that one of them is sure about slip under the kill level);
 * - with spam.rspamd.honourAction, rspamd's action raises the level: reject to kill, add header
 *   and rewrite subject to tag2 (spamd has no action of its own: its required_score is only
 *   logged, the bank's levels decide);
 * - the rules of both are listed, spamd's first;
 * - rspamd's soft reject (its ratelimit, greylisting) is a tempfail with honourAction, and an
 *   answer with is_skipped and no action (rspamd ran no rule and no prefilter decided) is not
 *   counted as a scan but reported; skipped with an action (GTUBE: reject) counts.
 *
 * Both get the same bytes: the message, its body cut at spam.maxScanBytes (scanSource).
 *
 * A scanner that fails is reported by name with its error; the other one's answer still counts.
 * Reads: spam.spamd.*, spam.rspamd.*, the levels. Fails: never throws for a scanner; an aborted
 * signal is returned as that scanner's failure.
 */
import net from 'node:net';
import type { RspamdClient, RspamdEnvelope, RspamdResult } from '../../lib/rspamd/client';
import { spamdCheck, type ScanSource, type SpamdResult, type SpamSymbol } from '../../lib/spamd/client';
import type { Message } from '../../transaction/message';
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
  /** Whether any scanner answered (and ran its rules). */
  readonly scanned: boolean;
  /** rspamd's soft reject with honourAction (its ratelimit or greylisting): try again later. */
  readonly softReject: boolean;
  /** Scanners that answered without running their rules (rspamd is_skipped). */
  readonly skipped: readonly string[];
  /** When the body was cut to maxScanBytes for the scanners: how many body bytes they saw. */
  readonly truncatedBodyBytes?: number;
}

export interface Scanners {
  readonly rspamd?: RspamdClient;
}

/**
 * What the scanners get: the whole message, or, when its body is over maxScanBytes, the header
 * and the body cut at the last line end within maxScanBytes (at maxScanBytes if no line ends
 * there). amavisd-new does the same for spamd ($sa_mail_body_size_limit, SpamdClient.pm: the
 * header plus that much body), so that a large attachment does not take spam past the check.
 * The cut is found by reading the body prefix once, without holding it; the scan reads it again.
 */
export async function scanSource(msg: Message, maxBodyBytes: number, signal: AbortSignal): Promise<ScanSource & { readonly truncatedBodyBytes?: number }> {
  if (msg.bodySize <= maxBodyBytes) return { size: msg.size, open: () => msg.openRaw() };
  let seen = 0;
  let cut = 0;
  for await (const buf of msg.openBody()) {
    signal.throwIfAborted();
    const room = Math.min(buf.length, maxBodyBytes - seen);
    const lf = buf.subarray(0, room).lastIndexOf(0x0a);
    if (lf >= 0) cut = seen + lf + 1;
    seen += room;
    if (seen >= maxBodyBytes) break;
  }
  if (cut === 0) cut = maxBodyBytes;
  const size = msg.headerSize + cut;
  return { size, open: () => firstBytes(msg.openRaw(), size), truncatedBodyBytes: cut };
}

async function* firstBytes(source: AsyncIterable<Buffer>, n: number): AsyncGenerator<Buffer> {
  let left = n;
  for await (const buf of source) {
    if (buf.length >= left) {
      yield buf.subarray(0, left);
      return;
    }
    yield buf;
    left -= buf.length;
  }
}

export async function scanMessage(settings: SpamSettings, scanners: Scanners, tx: Readonly<Transaction>, signal: AbortSignal): Promise<Combined> {
  const source = await scanSource(tx.message, settings.maxScanBytes, signal);
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
  const skipped: string[] = [];
  let softReject = false;
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
  // Skipped with an action: a prefilter decided (GTUBE, a soft reject), which counts. Skipped with none: nothing was scanned.
  else if (r.value && (r.value as RspamdResult).skipped && (r.value as RspamdResult).action === 'no action')
    skipped.push(`rspamd=skipped/${(r.value as RspamdResult).action.replace(' ', '_')}`);
  else if (r.value) {
    const v = r.value as RspamdResult;
    score = Math.max(score, v.score);
    tests.push(...v.symbols);
    words.push(`rspamd=${v.score}/${v.required}/${v.action.replace(' ', '_')}`);
    if (rspamd.honourAction) fromAction = v.action === 'reject' ? 'kill' : v.action === 'add header' || v.action === 'rewrite subject' ? 'tag2' : 'clean';
    softReject = rspamd.honourAction && v.action === 'soft reject';
  }
  const scanned = words.length > 0;
  const truncatedBodyBytes = source.truncatedBodyBytes;
  if (!scanned) return { score: 0, tests: [], level: 'clean', summary: '', failures, scanned, softReject, skipped, truncatedBodyBytes };
  // A score beyond any threshold is clamped, so that it always prints as a plain number (headers.ts).
  score = Math.max(-MAX_SCORE, Math.min(MAX_SCORE, score));
  const byScore: Level = score >= settings.killLevel ? 'kill' : score >= settings.tag2Level ? 'tag2' : score >= settings.tagLevel ? 'tag' : 'clean';
  return { score, tests, level: higher(byScore, fromAction), summary: words.join(' '), failures, scanned, softReject, skipped, truncatedBodyBytes };
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
