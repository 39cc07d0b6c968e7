/**
 * Builds DKIM-Signature fields (RFC 6376 3.5, 5; RFC 8463 for ed25519-sha256) from body
 * hashes computed elsewhere: chooses the header instances that h= names (oversigned names
 * count one more than present, RFC 6376 8.15), folds the field at 78 columns with b= last,
 * and signs (signData: on the event loop for small keys, in libuv's thread pool for large ones).
 *
 * rsa-sha1 is never offered (RFC 8301). Fails only by rejecting the promise with the
 * crypto error (a key that does not fit its algorithm), which the stage turns into a tempfail.
 */
import { createHash, sign as cryptoSign, type KeyObject } from 'node:crypto';
import type { HeaderField } from '../../transaction/message';
import { canonicalizeHeader, type DkimCanonicalization } from './canonicalization';

export type DkimAlgorithm = 'rsa-sha256' | 'ed25519-sha256';

export interface DkimSignatureInput {
  readonly algorithm: DkimAlgorithm;
  readonly privateKey: KeyObject;
  readonly domain: string;
  readonly selector: string;
  readonly headerCanon: DkimCanonicalization;
  readonly bodyCanon: DkimCanonicalization;
  /** Base64 SHA-256 of the canonical body. */
  readonly bodyHash: string;
  /** Lower-case names for h=, in order, each repeated as often as it is signed. */
  readonly signedNames: readonly string[];
  /** Seconds since the epoch, for t=; absent leaves t= out. */
  readonly timestamp?: number;
  /** Seconds since the epoch, for x=. */
  readonly expiration?: number;
  /** i=, an address or @domain within d=. */
  readonly identity?: string;
  /** l=, the canonical body length, when the signature covers only that much. */
  readonly bodyLength?: number;
}

const MAX_COLUMNS = 78;

/** The h= list: every configured name once per instance present, oversigned names (signed or not) once more. */
export function signedHeaderNames(fields: readonly HeaderField[], names: readonly string[], oversigned: readonly string[]): string[] {
  const over = new Set(oversigned.map((n) => n.toLowerCase()));
  const out: string[] = [];
  for (const name of new Set([...names, ...oversigned].map((n) => n.toLowerCase()))) {
    const present = fields.filter((f) => f.key === name).length;
    const times = present + (over.has(name) ? 1 : 0);
    for (let i = 0; i < times; i++) out.push(name);
  }
  return out;
}

/** RFC 6376 5.4.2: each listed name takes the next instance from the bottom; a name with none left hashes nothing. */
export function selectHeaderFields(fields: readonly HeaderField[], signedNames: readonly string[]): HeaderField[] {
  const used = new Set<HeaderField>();
  const picked: HeaderField[] = [];
  for (const name of signedNames) {
    for (let i = fields.length - 1; i >= 0; i--) {
      const f = fields[i];
      if (f.key === name && !used.has(f)) {
        used.add(f);
        picked.push(f);
        break;
      }
    }
  }
  return picked;
}

/** The complete DKIM-Signature field, folded, ending in CRLF. */
export async function createDkimSignature(fields: readonly HeaderField[], input: DkimSignatureInput): Promise<string> {
  const unsigned = formatUnsigned(input);
  const hashed = Buffer.concat([
    ...selectHeaderFields(fields, input.signedNames).map((f) => canonicalizeHeader(f.raw, input.headerCanon)),
    withoutCRLF(canonicalizeHeader(Buffer.from(unsigned, 'latin1'), input.headerCanon)),
  ]);
  const b = (await signData(input.algorithm, input.privateKey, hashed)).toString('base64');
  return withSignatureValue(unsigned, b);
}

/**
 * The ed25519 signature covers the SHA-256 of the data, not the data (RFC 8463 3).
 *
 * Where it runs: handing a signature to libuv's thread pool and back costs about 0.1 ms of CPU
 * (a futex wake, an eventfd write, an event-loop wake-up) on top of the 0.26 ms an RSA-2048
 * signature takes on the event loop (measured on the 2-core bench machines with Node 24), about
 * 6 % of a signed message's CPU when Postfix feeds the milter. So RSA keys up to 2048 bits and
 * ed25519 keys (0.05 ms) sign on the event loop, where they stall other connections for less
 * than a scheduler tick; larger RSA keys (3072: ~0.8 ms, 4096: ~2 ms) still go to the pool.
 */
export function signData(algorithm: DkimAlgorithm, key: KeyObject, data: Buffer): Promise<Buffer> {
  const [hash, input] = algorithm === 'rsa-sha256' ? ['sha256', data] : [null, createHash('sha256').update(data).digest()];
  if (!inThreadPool(key)) {
    try {
      return Promise.resolve(cryptoSign(hash, input, key));
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }
  return new Promise((resolve, reject) => cryptoSign(hash, input, key, (err, sig) => (err ? reject(err) : resolve(sig))));
}

/** RSA moduli above this sign in the thread pool (signData). */
const EVENT_LOOP_MAX_RSA_BITS = 2048;

function inThreadPool(key: KeyObject): boolean {
  return key.asymmetricKeyType === 'rsa' && (key.asymmetricKeyDetails?.modulusLength ?? Infinity) > EVENT_LOOP_MAX_RSA_BITS;
}

/** The field up to and including "b=", exactly as it is hashed (the b= value deleted, RFC 6376 3.7). */
export function formatUnsigned(input: DkimSignatureInput): string {
  const tags: [string, string][] = [
    ['v', '1'],
    ['a', input.algorithm],
    ['c', `${input.headerCanon}/${input.bodyCanon}`],
    ['d', input.domain],
    ['s', input.selector],
  ];
  if (input.identity !== undefined) tags.push(['i', input.identity]);
  if (input.bodyLength !== undefined) tags.push(['l', String(input.bodyLength)]);
  if (input.timestamp !== undefined) tags.push(['t', String(input.timestamp)]);
  if (input.expiration !== undefined) tags.push(['x', String(input.expiration)]);
  tags.push(['h', input.signedNames.join(':')], ['bh', input.bodyHash]);
  return foldTags('DKIM-Signature:', tags, 'b=');
}

/**
 * Tags separated by "; ", a new line (CRLF SP) before a tag that does not fit; h= breaks
 * after a colon and base64 anywhere, which both FWS rules allow (RFC 6376 3.2, 3.5).
 */
export function foldTags(fieldName: string, tags: readonly [string, string][], last: string): string {
  const lines: string[] = [];
  let line = fieldName;
  const put = (token: string) => {
    if (line.length + 1 + token.length > MAX_COLUMNS && line !== fieldName && line !== '') {
      lines.push(line);
      line = '';
    }
    line += ` ${token}`;
  };
  for (const [name, value] of tags) {
    const pieces = name === 'h' ? value.split(/(?<=:)/) : [value];
    const first = `${name}=${pieces[0]}${pieces.length === 1 ? ';' : ''}`;
    put(first);
    for (let i = 1; i < pieces.length; i++) {
      const piece = `${pieces[i]}${i === pieces.length - 1 ? ';' : ''}`;
      if (line.length + piece.length > MAX_COLUMNS) {
        lines.push(line);
        line = ` ${piece}`;
      } else {
        line += piece;
      }
    }
  }
  put(last);
  return [...lines, line].join('\r\n');
}

/** The unsigned field completed with its b= value: base64 fills the last line, then whole continuation lines. */
export function withSignatureValue(unsigned: string, b: string): string {
  return `${unsigned}${foldValue(b, lastLineLength(unsigned))}\r\n`;
}

function foldValue(value: string, usedColumns: number): string {
  const room = Math.max(0, MAX_COLUMNS - usedColumns);
  let out = value.slice(0, room);
  for (let pos = room; pos < value.length; pos += MAX_COLUMNS - 1) out += `\r\n ${value.slice(pos, pos + MAX_COLUMNS - 1)}`;
  return out;
}

function lastLineLength(text: string): number {
  return text.length - (text.lastIndexOf('\n') + 1);
}

function withoutCRLF(buf: Buffer): Buffer {
  return buf.subarray(0, buf.length - 2);
}
