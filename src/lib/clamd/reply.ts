/**
 * What clamd's answers mean (clamd(8), "COMMANDS"): each answer to a `z`-prefixed command
 * ends with a NUL byte. INSTREAM answers `stream: OK`, `stream: <name> FOUND` (one answer per
 * name when clamd runs with AllMatchScan), `INSTREAM size limit exceeded. ERROR` when the
 * stream passed its StreamMaxLength, or `<what> ERROR`; PING answers `PONG`; VERSION answers
 * `ClamAV <engine>[/<db version>/<db date>]`. Anything else is garbage: a result, never a
 * throw, so the stage can apply its onScannerFailure setting.
 *
 * Names and error texts come from the scanner and may, on a scanner that is not clamd, be
 * anything: they are cut to printable ASCII and a bounded length here, once, before they
 * reach a log line, a header field or a reply.
 */

/** Why a call gave no usable answer. */
export type FailureReason = 'unreachable' | 'timeout' | 'closed' | 'garbage' | 'error';

export interface ClamdFailure {
  readonly kind: 'failed';
  readonly reason: FailureReason;
  /** What happened, printable ASCII, for the log line and the finding. */
  readonly detail: string;
}

export type ScanResult =
  | { readonly kind: 'clean' }
  | { readonly kind: 'found'; readonly names: readonly string[] }
  /** Not scanned whole: over our maxStreamBytes, or over clamd's own StreamMaxLength. */
  | { readonly kind: 'too-big'; readonly detail: string }
  | ClamdFailure;

/** clamd's own names are short ([A-Za-z0-9._-]); anything longer is cut. */
export const MAX_NAME_CHARS = 100;
/** AllMatchScan can name many; the log and the header field keep the first ones. */
export const MAX_NAMES = 10;

/** Printable ASCII only, at most `max` characters: safe in a log line, a header field and a reply. */
export function printable(text: string, max = MAX_NAME_CHARS): string {
  const clean = text.replace(/[^\x20-\x7e]/g, '?').trim();
  return clean.length > max ? `${clean.slice(0, max)}...` : clean;
}

export function failure(reason: FailureReason, detail: string): ClamdFailure {
  return { kind: 'failed', reason, detail: printable(detail, 200) };
}

/** The NUL-terminated answers in what clamd sent before it closed the connection. */
export function splitAnswers(raw: Buffer): string[] {
  return raw
    .toString('latin1')
    .split('\0')
    .map((a) => a.replace(/\r?\n$/, ''))
    .filter((a) => a.length > 0);
}

const FOUND = /^stream: (.+) FOUND$/s;
const SIZE_LIMIT = /^INSTREAM size limit exceeded\.? ERROR$/;
const ERROR = /^(.*) ERROR$/s;

export function parseScanAnswers(answers: readonly string[]): ScanResult {
  if (answers.length === 0) return failure('garbage', 'clamd closed the connection without an answer');
  const names: string[] = [];
  let clean = false;
  for (const a of answers) {
    const found = FOUND.exec(a);
    if (found) {
      if (names.length < MAX_NAMES) names.push(printable(found[1]));
    } else if (a === 'stream: OK') clean = true;
    else if (SIZE_LIMIT.test(a)) return { kind: 'too-big', detail: "over clamd's StreamMaxLength" };
    else if (ERROR.test(a)) return failure('error', `clamd answered: ${a}`);
    else return failure('garbage', `clamd answered: ${a}`);
  }
  // An answer that is both clean and infected is not one clamd gives: the infected part is believed.
  if (names.length) return { kind: 'found', names };
  return clean ? { kind: 'clean' } : failure('garbage', `clamd answered: ${answers.join(' | ')}`);
}

export function parsePingAnswers(answers: readonly string[]): { readonly kind: 'pong' } | ClamdFailure {
  if (answers.length === 1 && answers[0] === 'PONG') return { kind: 'pong' };
  return failure('garbage', answers.length ? `PING answered: ${answers.join(' | ')}` : 'PING: closed without an answer');
}

export function parseVersionAnswers(answers: readonly string[]): { readonly kind: 'version'; readonly version: string } | ClamdFailure {
  if (answers.length === 1 && /^ClamAV [\x20-\x7e]+$/.test(answers[0])) return { kind: 'version', version: printable(answers[0], 200) };
  return failure('garbage', answers.length ? `VERSION answered: ${answers.join(' | ')}` : 'VERSION: closed without an answer');
}
