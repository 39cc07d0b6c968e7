/**
 * virus: the message as received goes to clamd (lib/clamd, INSTREAM over a unix socket or
 * TCP), the amavisd-new way: clamd decodes MIME, archives and encodings itself. Where clamd
 * reads a message short (MIME nested deeper than virus.maxMimeDepth, also inside encoded
 * message/rfc822 parts, nesting.ts: clamd stops at its MaxRecursion and says OK; a boundary in
 * RFC 2231 form; two Content-Type fields), a clean
 * answer is followed by a scan in pieces of the parts as readers see them (pieces.ts).
 *
 * Findings: VIRUS_CLEAN (detail: clamd's version once known), VIRUS_FOUND and, when every
 * recipient is a virus lover, VIRUS_FOUND_LOVED (detail: the virus names), VIRUS_SCANNER_FAILED
 * (unreachable, timeout, error or garbage answer; logged as a warning), VIRUS_NOT_SCANNED_TOO_BIG
 * (over maxScanBytes or clamd's StreamMaxLength: with largeMessages pieces, only the single
 * parts that are; the rest is scanned in pieces of whole parts, pieces.ts), VIRUS_BYPASSED (every recipient in bypass; no
 * scan). Their meaning is in rules.ts. Reads: virus.* and timeouts.stageTimeoutMs (load check).
 *
 * At load, a bank that signs (its stages list dkim-sign: an originating bank) may not deliver
 * a virus or unscanned mail, nor drop it silently: destiny pass or discard, lovers, onTooBig
 * pass and onScannerFailure pass are refused there (CFG_INCONSISTENT), so that a compromised
 * account cannot send signed malware (by padding it past maxScanBytes either). probe.ts asks clamd for PING at start-up and for /readyz.
 */
import { PostsealError } from '../../errors';
import type { ClamdClient, ClamdFailure } from '../../lib/clamd';
import { coversAllRecipients, SIGNING_DESTINIES, signsMail } from '../../pipeline/destiny';
import { defineStage, type Finding, type StageOutcome } from '../../pipeline/stage';
import type { Transaction } from '../../transaction/transaction';
import { clientFor } from './clamd';
import { type Cut, keptHeader, openScan, piecesOf, plan } from './pieces';
import { compilePattern } from '../../config/patterns';
import { VIRUS_FINDINGS, virusRules, type VirusFinding } from './rules';
import { virusBankSchema, type VirusSettings } from './schema';

/** A depth for the log; Infinity is one nesting.ts could not measure (past its walk or decoding budget). */
const levels = (n: number) => (n === Infinity ? 'more levels than postseal measures (100, or its decoding budget)' : `${n} levels`);

/** What clamd with AlertExceedsMax names when it stopped at one of its limits (MaxRecursion, MaxFileSize, ...). */
const SCAN_LIMIT = /^Heuristics\.Limits\.Exceeded(\.|$)/;
/** The depth limit: nesting past it is how a virus is hidden, and legitimate mail hardly has it. */
const DEPTH_LIMIT = 'Heuristics.Limits.Exceeded.MaxRecursion';

/**
 * clamd stopped at a limit of size, count or time only (MaxFileSize, MaxScanSize, MaxFiles,
 * MaxScanTime, ...): a large legitimate archive meets them, so what lies past them is unscanned
 * (VIRUS_NOT_SCANNED_TOO_BIG, onTooBig decides), not a virus.
 */
const onlySizeLimits = (names: readonly string[]) => names.every((n) => SCAN_LIMIT.test(n)) && !names.includes(DEPTH_LIMIT);

/** clamd's version is asked again after this long (a database update changes it), in the background. */
const VERSION_TTL_MS = 10 * 60 * 1000;

/** clamd's version for the log, asked at most every VERSION_TTL_MS and never on a message's time. */
class VersionCache {
  private value: string | undefined;
  private at = -Infinity;
  private pending = false;

  constructor(private readonly client: ClamdClient) {}

  get current(): string | undefined {
    if (!this.pending && performance.now() - this.at > VERSION_TTL_MS) {
      this.pending = true;
      this.client
        .version()
        .then((v) => {
          if (v.kind === 'version') this.value = v.version;
        })
        .finally(() => {
          this.at = performance.now();
          this.pending = false;
        })
        .catch(() => undefined);
    }
    return this.value;
  }
}

export const virusStage = defineStage<VirusSettings, VirusFinding>({
  id: 'virus',
  phase: 'check',
  after: ['header-sanity'],
  settings: { key: 'virus', schema: virusBankSchema },
  findings: VIRUS_FINDINGS,
  rules: virusRules,
  check(s, bank, where) {
    if (signsMail(bank)) {
      const why = 'this bank signs (its stages list dkim-sign), and outgoing infected or unscanned mail must not be signed';
      if (s.destiny === 'pass')
        throw new PostsealError('CFG_INCONSISTENT', `${where}: /virus/destiny: "pass" delivers viruses, but ${why}; use reject (the default), bounce or quarantine`);
      if (!SIGNING_DESTINIES.includes(s.destiny))
        throw new PostsealError(
          'CFG_INCONSISTENT',
          `${where}: /virus/destiny: "${s.destiny}" drops the mail without telling our user, but ${why} and refused with a clear reply; use reject (the default), bounce or quarantine`,
        );
      if (s.lovers.length) throw new PostsealError('CFG_INCONSISTENT', `${where}: /virus/lovers: lovers get viruses delivered, but ${why}; remove the list from this bank`);
      if (s.onTooBig === 'pass')
        throw new PostsealError(
          'CFG_INCONSISTENT',
          `${where}: /virus/onTooBig: "pass" delivers big mail unscanned, but ${why}; use auto (the default: reject here), reject or tempfail`,
        );
      if (s.onScannerFailure === 'pass')
        throw new PostsealError(
          'CFG_INCONSISTENT',
          `${where}: /virus/onScannerFailure: "pass" delivers mail unscanned while clamd is down, but ${why}; use tempfail (the default)`,
        );
    }
    s.fakeSenderNames.forEach((p, i) => {
      try {
        compilePattern(p);
      } catch (err) {
        throw new PostsealError('CFG_INCONSISTENT', `${where}: /virus/fakeSenderNames/${i}: "${p}" is not a regular expression (${(err as Error).message})`);
      }
    });
    if (s.timeoutMs >= bank.timeouts.stageTimeoutMs)
      throw new PostsealError(
        'CFG_INCONSISTENT',
        `${where}: /virus/timeoutMs: ${s.timeoutMs} is not below /timeouts/stageTimeoutMs (${bank.timeouts.stageTimeoutMs}), so a slow clamd would end the stage before onScannerFailure could apply; lower virus.timeoutMs`,
      );
  },
  create: (s, _bank, deps) => {
    const client = clientFor(s);
    const versions = new VersionCache(client);
    const one = (code: VirusFinding, detail: string): StageOutcome => ({ findings: [{ code, detail } satisfies Finding] });
    const failed = (tx: Transaction, r: ClamdFailure, what = '') => {
      deps.log.warn({ tx: tx.id, scanner: client.name, reason: r.reason, detail: r.detail, onScannerFailure: s.onScannerFailure }, `virus scan failed${what}`);
      return one('VIRUS_SCANNER_FAILED', `${client.name}: ${r.reason}: ${r.detail}${what}`);
    };
    /**
     * A message over maxScanBytes, or one clamd reads short whole (`why`), its parts in several
     * scans (pieces.ts); the first virus ends it. `wholeScanned`: clamd found the whole message
     * clean, so pieces that are one of two readings (`notCut` with pieces) complete it.
     */
    const scanInPieces = async (tx: Transaction, cut: Cut, why: string, signal: AbortSignal, wholeScanned = false): Promise<StageOutcome> => {
      if (cut.notCut && !(wholeScanned && cut.pieces.length)) return one('VIRUS_NOT_SCANNED_TOO_BIG', `${tx.message.size} bytes, ${why}, not cut into pieces: ${cut.notCut}`);
      // An encoded message/rfc822 part keeps its nesting in a piece: clamd would stop there too.
      if (cut.pieceDepth > s.maxMimeDepth)
        return one(
          'VIRUS_NOT_SCANNED_TOO_BIG',
          `${tx.message.size} bytes, ${why}; an encoded message/rfc822 part nests ${levels(cut.pieceDepth)} deep even in a piece, deeper than virus.maxMimeDepth (${s.maxMimeDepth})`,
        );
      const { scans, tooBig } = plan(cut.pieces, s.maxScanBytes, keptHeader(tx.message).length);
      const unscanned = tooBig.map((p) => `${p.what}: ${p.end - p.start} bytes, over virus.maxScanBytes (${s.maxScanBytes})`);
      for (const [i, pieces] of scans.entries()) {
        const r = await client.scan(() => openScan(tx.message, pieces), signal);
        const span = pieces.length > 1 ? `from ${pieces[0].what} to ${pieces[pieces.length - 1].what}` : pieces[0].what;
        const where = ` (scan ${i + 1} of ${scans.length}, ${span})`;
        if (r.kind === 'found' && onlySizeLimits(r.names)) unscanned.push(`${span}: clamd stopped at ${r.names.join(', ')}`);
        else if (r.kind === 'found') return one(coversAllRecipients(s.lovers, tx) ? 'VIRUS_FOUND_LOVED' : 'VIRUS_FOUND', `${r.names.join(', ')}${where}`);
        else if (r.kind === 'too-big') unscanned.push(`${span}: ${r.detail}`);
        else if (r.kind !== 'clean') return failed(tx, r, where);
      }
      if (unscanned.length)
        return one(
          'VIRUS_NOT_SCANNED_TOO_BIG',
          `${tx.message.size} bytes in ${scans.length} scans; not scanned: ${unscanned.slice(0, 5).join('; ')}${unscanned.length > 5 ? `; ${unscanned.length - 5} more` : ''}`,
        );
      return one('VIRUS_CLEAN', `${versions.current ?? client.name}; ${tx.message.size} bytes in ${scans.length} scans of whole parts`);
    };
    return {
      id: 'virus',
      async run(tx, signal) {
        if (coversAllRecipients(s.bypass, tx)) return one('VIRUS_BYPASSED', 'every recipient is in virus.bypass');
        const size = tx.message.size;
        if (size > s.maxScanBytes) {
          if (s.largeMessages === 'skip') return one('VIRUS_NOT_SCANNED_TOO_BIG', `${size} bytes, over virus.maxScanBytes (${s.maxScanBytes})`);
          return scanInPieces(tx, await piecesOf(tx.message, signal), `over virus.maxScanBytes (${s.maxScanBytes})`, signal);
        }
        const r = await client.scan(() => tx.message.openRaw(), signal);
        switch (r.kind) {
          case 'clean': {
            // clamd answers OK for what lies below its MaxRecursion, or for parts it did not split
            // as readers do: such a message is scanned again, in pieces of the parts readers see.
            const cut = await piecesOf(tx.message, signal);
            if (cut.depth > s.maxMimeDepth) return scanInPieces(tx, cut, `MIME nested ${levels(cut.depth)} deep, deeper than virus.maxMimeDepth (${s.maxMimeDepth})`, signal, true);
            if (cut.clamdMisreads) return scanInPieces(tx, cut, `split otherwise by clamd than by mail readers (${cut.clamdMisreads})`, signal, true);
            return one('VIRUS_CLEAN', versions.current ?? client.name);
          }
          case 'found': {
            if (onlySizeLimits(r.names)) return one('VIRUS_NOT_SCANNED_TOO_BIG', `${size} bytes, clamd stopped at ${r.names.join(', ')} (its clamd.conf limits)`);
            const whole = one(coversAllRecipients(s.lovers, tx) ? 'VIRUS_FOUND_LOVED' : 'VIRUS_FOUND', r.names.join(', '));
            // clamd with AlertExceedsMax names the limit it stopped at instead of answering OK.
            // MIME nested past maxMimeDepth is one postseal takes apart itself: scanned in pieces,
            // whose answers decide (a piece that meets a limit again is still VIRUS_FOUND). Only
            // a scan of every piece overturns the alert: pieces that were not all scanned (an
            // encoded message/rfc822 part as deep in its piece, a piece too big, a failed scan)
            // would turn refused mail into mail that onTooBig or onScannerFailure may pass.
            if (r.names.every((n) => SCAN_LIMIT.test(n))) {
              const cut = await piecesOf(tx.message, signal);
              if (cut.depth > s.maxMimeDepth && !cut.notCut && cut.pieceDepth <= s.maxMimeDepth) {
                const why = `clamd stopped at ${r.names.join(', ')}; MIME nested ${levels(cut.depth)} deep, deeper than virus.maxMimeDepth (${s.maxMimeDepth})`;
                const pieces = await scanInPieces(tx, cut, why, signal);
                if (pieces.findings.every((f) => f.code === 'VIRUS_CLEAN' || f.code === 'VIRUS_FOUND' || f.code === 'VIRUS_FOUND_LOVED')) return pieces;
              }
            }
            return whole;
          }
          case 'too-big':
            return one('VIRUS_NOT_SCANNED_TOO_BIG', `${size} bytes, ${r.detail}`);
          default:
            return failed(tx, r);
        }
      },
    };
  },
});
