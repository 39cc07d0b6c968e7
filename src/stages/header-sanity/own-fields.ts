/**
 * The header fields postseal writes that a sender must not be able to write for it: every
 * X-Postseal-Alert (the virus, banned and header-sanity verdicts add ours, after the stages)
 * and X-Postseal-Quarantine (dmarc onReject/onQuarantine header, which Postfix header_checks
 * may HOLD on) the message arrived with, and each X-Virus-Scanned whose value is the one this
 * bank's virus stage writes (virus.scannedHeaderValue, or "postseal at <authservId>"), compared
 * without case and with white space runs as one space.
 *
 * X-Virus-Scanned fields of other values stay: they are other hosts' trace (an MSA's own
 * scanner), and amavisd-new keeps them too by default ($remove_existing_x_scanned_headers 0;
 * with 1 it removes every field of its name). A forged one of our value is what could pass
 * for our scan of mail we did not scan (bypassed, too big, or a bank without the virus stage).
 * X-Postseal-Trace (loop-guard) and X-Postseal-Report are not touched: loop-guard reads them.
 * Reads: headerSanity.removeOwnFields, virus.scannedHeaderValue (of the whole bank).
 */
import { Message, type HeaderField } from '../../transaction/message';

const ALWAYS = new Set(['x-postseal-alert', 'x-postseal-quarantine']);
const SCANNED = 'x-virus-scanned';

const normal = (v: string) => v.replace(/\s+/g, ' ').trim().toLowerCase();

/** The value our virus stage writes on this bank (the bank's virus section, read without importing that stage). */
export function ourScannedValue(bank: object, authservId: string): string {
  const virus = (bank as { virus?: { scannedHeaderValue?: unknown } }).virus;
  const value = typeof virus?.scannedHeaderValue === 'string' ? virus.scannedHeaderValue : '';
  return value || `postseal at ${authservId}`;
}

/** The message without the forged fields, and their names; undefined when it has none. */
export function withoutOwnFields(msg: Message, scannedValue: string): { message: Message; removed: string[] } | undefined {
  const ours = normal(scannedValue);
  const forged = (f: HeaderField) => ALWAYS.has(f.key) || (f.key === SCANNED && normal(Message.value(f)) === ours);
  const removed = msg.fields.filter(forged);
  if (removed.length === 0) return undefined;
  return { message: msg.withFields(msg.fields.filter((f) => !forged(f))), removed: [...new Set(removed.map((f) => f.name))] };
}
