/**
 * ARC sets for tests: sealed by mailauth's createSeal (an implementation other than ours),
 * or by hand here, with canonicalization written out independently of src/lib/dkim, for
 * seals that break one rule at a time (a tag list rewritten before it is signed, an
 * ARC-Message-Signature hashed one way and labelled another). Keys and DNS records come
 * from the DKIM corpus: other2048.pem is rsa._domainkey.example.org.
 */
import { createHash, createPrivateKey, sign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { createSeal } from 'mailauth/lib/arc';
import { corpusDir } from './auth';

export const arcKeyPem = readFileSync(path.join(corpusDir, 'keys/other2048.pem'));
export const arcKey: KeyObject = createPrivateKey(arcKeyPem);
export const ARC_DOMAIN = 'example.org';
export const ARC_SELECTOR = 'rsa';

/** The message with one more ARC set on top, made by mailauth. */
export async function mailauthSeal(
  message: Buffer,
  cv: 'none' | 'pass' | 'fail',
  opts: { domain?: string; selector?: string; keyPem?: Buffer; authResults?: string } = {},
): Promise<Buffer> {
  const { headers, errors } = await createSeal(Readable.from([message]), {
    seal: {
      signingDomain: opts.domain ?? ARC_DOMAIN,
      selector: opts.selector ?? ARC_SELECTOR,
      privateKey: opts.keyPem ?? arcKeyPem,
      cv,
      authResults: opts.authResults ?? 'lists.example.org; spf=pass smtp.mailfrom=alice@example.com',
    },
  });
  if (!headers.length) throw new Error(`mailauth did not seal: ${JSON.stringify(errors)}`);
  return Buffer.concat([Buffer.from(`${headers.map((h) => h.replace(/\r?\n$/, '').replace(/\r?\n/g, '\r\n')).join('\r\n')}\r\n`, 'latin1'), message]);
}

export interface HandSealOptions {
  /** How the AMS is hashed. */
  readonly canon?: 'simple/simple' | 'relaxed/relaxed';
  /** The c= tag as written; null leaves it out. Default: `canon`. */
  readonly cTag?: string | null;
  /** Rewrites the ARC-Seal tag list (everything before "b=") before it is signed. */
  readonly sealTags?: (tags: string) => string;
  /** Replaces the AMS bh= value. */
  readonly bodyHash?: string;
  /** Adds l= with the canonical body length, so that text appended later is not signed. */
  readonly bodyLength?: boolean;
}

/** Set i=1 (cv=none) over a message without a chain, made by hand. */
export function handSeal(message: Buffer, opts: HandSealOptions = {}): Buffer {
  const text = message.toString('latin1');
  const split = text.indexOf('\r\n\r\n');
  const header = text.slice(0, split + 2);
  const body = text.slice(split + 4);
  const fields = header
    .split(/\r\n(?![ \t])/)
    .filter(Boolean)
    .map((f) => `${f}\r\n`);
  const canon = opts.canon ?? 'relaxed/relaxed';
  const [hc, bc] = canon.split('/') as ['simple' | 'relaxed', 'simple' | 'relaxed'];
  const aar = 'ARC-Authentication-Results: i=1; lists.example.org; spf=pass smtp.mailfrom=alice@example.com\r\n';
  const names = ['from', 'to', 'subject', 'date', 'message-id'].filter((n) => fields.some((f) => nameOf(f) === n));
  const bh = opts.bodyHash ?? createHash('sha256').update(canonBody(body, bc), 'latin1').digest('base64');
  const cTag =
    (opts.cTag === undefined ? `c=${canon}; ` : opts.cTag === null ? '' : `c=${opts.cTag}; `) + (opts.bodyLength ? `l=${Buffer.byteLength(canonBody(body, bc), 'latin1')}; ` : '');
  const amsUnsigned = `ARC-Message-Signature: i=1; a=rsa-sha256; ${cTag}d=${ARC_DOMAIN}; s=${ARC_SELECTOR};\r\n\th=${names.join(':')};\r\n\tbh=${bh};\r\n\tb=`;
  const picked = names.map((n) => [...fields].reverse().find((f) => nameOf(f) === n)!);
  const amsData = picked.map((f) => canonHeader(f, hc)).join('') + canonHeader(amsUnsigned, hc).replace(/\r\n$/, '');
  const ams = `${amsUnsigned}${rsa(amsData)}\r\n`;
  const sealTags = (opts.sealTags ?? ((t) => t))(`i=1; a=rsa-sha256; t=1780000000; cv=none; d=${ARC_DOMAIN}; s=${ARC_SELECTOR};`);
  const sealUnsigned = `ARC-Seal: ${sealTags}\r\n\tb=`;
  const sealData = canonHeader(aar, 'relaxed') + canonHeader(ams, 'relaxed') + canonHeader(sealUnsigned, 'relaxed').replace(/\r\n$/, '');
  const seal = `${sealUnsigned}${rsa(sealData)}\r\n`;
  return Buffer.from(seal + ams + aar + text, 'latin1');
}

function rsa(data: string): string {
  return sign('sha256', Buffer.from(data, 'latin1'), arcKey).toString('base64');
}

function nameOf(field: string): string {
  return field.slice(0, field.indexOf(':')).trim().toLowerCase();
}

/** RFC 6376 3.4.1 and 3.4.2, written out. */
function canonHeader(field: string, c: 'simple' | 'relaxed'): string {
  if (c === 'simple') return field.endsWith('\r\n') ? field : `${field}\r\n`;
  const colon = field.indexOf(':');
  const value = field
    .slice(colon + 1)
    .replace(/\r\n/g, '')
    .replace(/[ \t]+/g, ' ')
    .trim();
  return `${nameOf(field)}:${value}\r\n`;
}

/** RFC 6376 3.4.3 and 3.4.4, for bodies with CRLF line ends. */
function canonBody(body: string, c: 'simple' | 'relaxed'): string {
  let lines = body.split('\r\n');
  if (lines[lines.length - 1] === '') lines.pop();
  if (c === 'relaxed') lines = lines.map((l) => l.replace(/[ \t]+/g, ' ').replace(/ $/, ''));
  while (lines.length && lines[lines.length - 1] === '') lines.pop();
  if (!lines.length) return c === 'simple' ? '\r\n' : '';
  return lines.map((l) => `${l}\r\n`).join('');
}
