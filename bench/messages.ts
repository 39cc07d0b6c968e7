/**
 * The benchmark's mail and keys: deterministic 2/20/200 KB messages (an 8-bit UTF-8 text
 * part, so the originating path has something to make 7-bit, and a base64 attachment for the
 * larger sizes), the same messages DKIM-signed by an outside domain for the inbound path, and
 * the DNS records that make those signatures (and postseal's own) verifiable.
 */
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { dkimSign } from 'mailauth';

/** Signed with RSA-2048 (postseal and amavisd-new). */
export const OWN_DOMAIN = 'bench.example';
/** Signed with RSA-2048 and Ed25519 (postseal only): the signing table picks keys by author domain. */
export const DUAL_DOMAIN = 'dual.example';
export const OUTSIDE_DOMAIN = 'sender.example';
export const ENVELOPE = { originating: `alice@${OWN_DOMAIN}`, dual: `alice@${DUAL_DOMAIN}`, inbound: `news@${OUTSIDE_DOMAIN}`, to: 'bob@rcpt.example' };

export interface BenchKeys {
  /** The signing keys (PEM files): RSA for OWN_DOMAIN and DUAL_DOMAIN, Ed25519 for DUAL_DOMAIN. */
  rsaFile: string;
  rsaSelector: string;
  ed25519File: string;
  ed25519Selector: string;
  /** The outside sender's key, which signs the inbound messages. */
  outsidePem: string;
  outsideSelector: string;
  /** TXT records by name for the loopback DNS server. */
  dns: Map<string, string[]>;
}

export function makeKeys(dir: string): BenchKeys {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ed = generateKeyPairSync('ed25519');
  const outside = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = (k: typeof rsa.privateKey) => k.export({ type: 'pkcs8', format: 'pem' }).toString();
  // amavisd-new reads RSA keys in the PKCS#1 form.
  const rsaPem = rsa.privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  const spki = (k: typeof rsa.publicKey) => k.export({ type: 'spki', format: 'der' }).toString('base64');
  // RFC 8463: the ed25519 p= is the raw 32-byte key, the end of its SPKI encoding.
  const edRaw = ed.publicKey.export({ type: 'spki', format: 'der' }).subarray(-32).toString('base64');
  const keys: BenchKeys = {
    rsaFile: path.join(dir, 'rsa2048.pem'),
    rsaSelector: 'rsa2048',
    ed25519File: path.join(dir, 'ed25519.pem'),
    ed25519Selector: 'ed25519',
    outsidePem: pem(outside.privateKey),
    outsideSelector: 'bench',
    dns: new Map([
      [`rsa2048._domainkey.${OWN_DOMAIN}`, [`v=DKIM1; k=rsa; p=${spki(rsa.publicKey)}`]],
      [`rsa2048._domainkey.${DUAL_DOMAIN}`, [`v=DKIM1; k=rsa; p=${spki(rsa.publicKey)}`]],
      [`ed25519._domainkey.${DUAL_DOMAIN}`, [`v=DKIM1; k=ed25519; p=${edRaw}`]],
      [`bench._domainkey.${OUTSIDE_DOMAIN}`, [`v=DKIM1; k=rsa; p=${spki(outside.publicKey)}`]],
      [OUTSIDE_DOMAIN, ['v=spf1 ip4:127.0.0.0/8 -all']],
      [`_dmarc.${OUTSIDE_DOMAIN}`, ['v=DMARC1; p=reject']],
      [OWN_DOMAIN, ['v=spf1 ip4:127.0.0.0/8 -all']],
      [`_dmarc.${OWN_DOMAIN}`, ['v=DMARC1; p=none']],
    ]),
  };
  writeFileSync(keys.rsaFile, rsaPem, { mode: 0o640 });
  writeFileSync(keys.ed25519File, pem(ed.privateKey), { mode: 0o640 });
  return keys;
}

export type MessageKind = 'plain' | 'dual' | 'signed';

export interface BenchMessage {
  /** The message with CRLF line endings, as it travels. */
  bytes: Buffer;
  /** The same with LF line endings, for smtp-source -F. */
  file: string;
}

/** Builds (and for `signed`, DKIM-signs) a message of about `sizeKb` KiB and writes its file. */
export async function makeMessage(dir: string, sizeKb: number, kind: MessageKind, keys: BenchKeys): Promise<BenchMessage> {
  const from = kind === 'signed' ? `Newsletter <${ENVELOPE.inbound}>` : `Alice Example <${kind === 'dual' ? ENVELOPE.dual : ENVELOPE.originating}>`;
  let bytes = Buffer.from(compose(sizeKb * 1024, from, kind));
  if (kind === 'signed') {
    const key = { signingDomain: OUTSIDE_DOMAIN, selector: keys.outsideSelector, privateKey: keys.outsidePem };
    const signed = await dkimSign(bytes, { ...key, canonicalization: 'relaxed/relaxed', signTime: new Date('2026-01-01T00:00:00Z'), signatureData: [key] });
    if (!signed.signatures) throw new Error(`signing the inbound message failed: ${JSON.stringify(signed.errors)}`);
    bytes = Buffer.concat([Buffer.from(signed.signatures), bytes]);
  }
  const file = path.join(dir, `${kind}-${sizeKb}k.eml`);
  writeFileSync(file, bytes.toString('latin1').replace(/\r\n/g, '\n'), 'latin1');
  return { bytes, file };
}

const TEXT = [
  'Grüße aus Zürich: die Übersicht für das nächste Quartal liegt bei.',
  'Café, crème brûlée et déjà-vu: le menu de la fête est prêt.',
  'Please find the figures for the review attached; totals are in € and £.',
  'Ça va très bien, merci. Ñandú, señor, año: the Spanish part follows.',
];

function compose(target: number, from: string, kind: MessageKind): string {
  const rand = mulberry32(target);
  const text: string[] = [];
  const textBytes = Math.min(target - 600, 1500);
  for (let n = 0; n < textBytes; ) {
    const line = TEXT[Math.floor(rand() * TEXT.length)];
    text.push(line);
    n += Buffer.byteLength(line) + 2;
  }
  const head = [
    `From: ${from}`,
    `To: Bob <${ENVELOPE.to}>`,
    `Subject: Benchmark message of ${Math.round(target / 1024)} KB`,
    'Date: Thu, 01 Jan 2026 00:00:00 +0000',
    `Message-ID: <bench-${target}-${kind}@${from.slice(from.indexOf('@') + 1, -1)}>`,
    'MIME-Version: 1.0',
  ];
  const textPart = ['Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: 8bit', '', ...text];
  const soFar = [...head, ...textPart].join('\r\n').length;
  if (target - soFar < 600) return [...head, ...textPart, ''].join('\r\n');
  const boundary = '=_bench_boundary_0001';
  const attachmentBytes = Math.floor(((target - soFar - 400) * 3) / 4 / 78) * 57;
  const data = Buffer.alloc(attachmentBytes);
  for (let i = 0; i < data.length; i++) data[i] = Math.floor(rand() * 256);
  const b64 = data.toString('base64').match(/.{1,76}/g) ?? [];
  return [
    ...head,
    `Content-Type: multipart/mixed; boundary="${boundary}"`,
    '',
    `--${boundary}`,
    ...textPart,
    `--${boundary}`,
    'Content-Type: application/octet-stream; name="figures.bin"',
    'Content-Disposition: attachment; filename="figures.bin"',
    'Content-Transfer-Encoding: base64',
    '',
    ...b64,
    `--${boundary}--`,
    '',
  ].join('\r\n');
}

/** A small seeded generator, so every run sends the same bytes. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
