/**
 * The header side of verifying a DKIM-style signature (RFC 6376 3.7, 6.1.3; RFC 8617 5.2 for
 * the ARC-Message-Signature, which is hashed the same way; RFC 8463 for Ed25519): the data
 * the signature covers and the public-key check of b= against it. Shared by dkim-verify and
 * arc-verify. `verifySignedData` throws only for a signature or key that crypto cannot use
 * (the callers report it); it never reads DNS.
 */
import { createHash, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import type { HeaderField } from '../../transaction/message';
import { canonicalizeHeader, type DkimCanonicalization } from './canonicalization';
import { selectHeaderFields } from './signature';

/** RFC 6376 3.7: the signed fields, then the signature field itself with its b= value deleted, without its CRLF. */
export function signedHeaderData(fields: readonly HeaderField[], signedNames: readonly string[], own: HeaderField, canon: DkimCanonicalization): Buffer {
  const self = canonicalizeHeader(own.raw, canon);
  return Buffer.concat([...selectHeaderFields(fields, signedNames).map((f) => canonicalizeHeader(f.raw, canon)), withoutSignatureValue(self.subarray(0, self.length - 2))]);
}

/** The b= tag keeps its name and "=" and loses the rest up to its ";", whitespace included. */
export function withoutSignatureValue(field: Buffer): Buffer {
  const text = field.toString('latin1');
  const colon = text.indexOf(':');
  const segments = text.slice(colon + 1).split(';');
  for (let i = segments.length - 1; i >= 0; i--) {
    const eq = segments[i].indexOf('=');
    if (eq >= 0 && segments[i].slice(0, eq).replace(/[ \t\r\n]+/g, '') === 'b') {
      segments[i] = segments[i].slice(0, eq + 1);
      break;
    }
  }
  return Buffer.from(`${text.slice(0, colon + 1)}${segments.join(';')}`, 'latin1');
}

/**
 * b= (base64, white space allowed) against `data`. RFC 8463 3: Ed25519 signs the SHA-256 of
 * the data. A public-key verify is a few microseconds: done here, not in the thread pool,
 * which would cost more to wake.
 */
export function verifySignedData(signAlgo: 'rsa' | 'ed25519', data: Buffer, key: KeyObject, b: string): boolean {
  const signature = Buffer.from(b.replace(/[ \t\r\n]/g, ''), 'base64');
  return signAlgo === 'rsa' ? cryptoVerify('sha256', data, key, signature) : cryptoVerify(null, createHash('sha256').update(data).digest(), key, signature);
}
