/**
 * One SRS lookup as both map protocols see it: found (the rewritten address), not found (left
 * alone, or an SRS address that does not verify: Postfix then treats it as any unknown
 * recipient), or a temporary error. A lookup never fails permanently: an error inside the engine
 * is a temporary error, so Postfix defers the mail instead of bouncing it.
 *
 * The key comes as the bytes Postfix sent. One that is no UTF-8 (a Latin-1 local part from a
 * Postfix without smtputf8_enable) is not found: decoded, its bytes would be replaced, and the
 * SRS address made of them would reverse into another address than the sender's.
 */
import { isUtf8 } from 'node:buffer';
import type { SrsEngine } from '../../lib/srs/srs';

export type SrsMapName = 'forward' | 'reverse';

export type LookupReply =
  | { readonly status: 'found'; readonly value: string }
  | { readonly status: 'notfound'; readonly reason: string }
  | { readonly status: 'temp'; readonly reason: string };

/**
 * Longest key looked up: an SMTP path is at most 256 octets (RFC 5321 4.5.3.1.3), so a longer
 * key is no address of ours and gets "not found" without hashing it.
 */
export const MAX_KEY_BYTES = 1024;

export type SrsLookup = (map: SrsMapName, key: Buffer) => LookupReply;

/** `engine()` is read at every lookup, so a reload's new secrets apply to the next request. */
export function createSrsLookup(engine: () => SrsEngine | undefined): SrsLookup {
  return (map, bytes) => {
    if (bytes.length > MAX_KEY_BYTES) return { status: 'notfound', reason: 'key too long' };
    if (!isUtf8(bytes)) return { status: 'notfound', reason: 'key is not UTF-8' };
    const key = bytes.toString('utf8');
    try {
      const e = engine();
      if (!e) return { status: 'temp', reason: 'SRS secrets not loaded' };
      const r = map === 'forward' ? e.forward(key) : e.reverse(key);
      if (r.kind === 'rewritten') return { status: 'found', value: r.address };
      return { status: 'notfound', reason: r.reason };
    } catch (err) {
      return { status: 'temp', reason: `SRS lookup failed: ${(err as Error).message}` };
    }
  };
}
