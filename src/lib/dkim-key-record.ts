/**
 * The DKIM key record (RFC 6376 3.6.1, RFC 8463 for Ed25519) of a key pair, and its
 * zone-file form: TXT character-strings of at most 255 octets (RFC 1035 3.3.14), wrapped in
 * parentheses so BIND-style zone files and nsupdate take it as one record.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';

export type DkimKeyType = 'rsa' | 'ed25519';

/** p= value: SubjectPublicKeyInfo for RSA, the raw 32-byte public key for Ed25519. */
export function publicKeyValue(key: KeyObject): { type: DkimKeyType; p: string } {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  if (pub.asymmetricKeyType === 'ed25519') {
    const jwk = pub.export({ format: 'jwk' });
    return { type: 'ed25519', p: Buffer.from(jwk.x as string, 'base64url').toString('base64') };
  }
  if (pub.asymmetricKeyType === 'rsa') return { type: 'rsa', p: pub.export({ format: 'der', type: 'spki' }).toString('base64') };
  throw new Error(`DKIM has no key type for ${pub.asymmetricKeyType} keys (rsa or ed25519 only)`);
}

export function keyRecordText(key: KeyObject, opts: { testing?: boolean } = {}): string {
  const { type, p } = publicKeyValue(key);
  return `v=DKIM1; k=${type};${opts.testing ? ' t=y;' : ''} p=${p}`;
}

export function zoneRecord(domain: string, selector: string, text: string, ttl = 3600): string {
  const strings: string[] = [];
  for (let i = 0; i < text.length; i += 255) strings.push(`"${text.slice(i, i + 255)}"`);
  return `${selector}._domainkey.${domain}. ${ttl} IN TXT ( ${strings.join('\n\t')} )`;
}
