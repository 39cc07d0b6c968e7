/**
 * Body hashes for signature verification (RFC 6376 3.7, 6.1.3): one read of the body for
 * every hash a message's signatures need, one canonicalizer per canonicalization and one
 * hash per distinct (canonicalization, hash algorithm, l=). Used by dkim-verify and by
 * arc-verify (the newest ARC-Message-Signature). Stops with the signal's reason when the
 * signal is aborted between two chunks.
 */
import { createHash, type Hash } from 'node:crypto';
import type { Message } from '../../transaction/message';
import { BodyCanonicalizer, type DkimCanonicalization } from './canonicalization';

/** What a signature asks to have hashed. */
export interface BodyHashRequest {
  readonly bodyCanon: DkimCanonicalization;
  readonly hashAlgo: 'sha256' | 'sha1';
  /** l=: canonical body octets covered. */
  readonly bodyLength?: number;
}

export interface BodyHash {
  readonly hash: Hash;
  readonly limit: number;
  hashed: number;
  /** Base64, after the body was read. */
  digest?: string;
  /** Canonical body octets in all, past any l= limit. */
  total?: number;
}

export function bodyKey(c: BodyHashRequest): string {
  return `${c.bodyCanon}:${c.hashAlgo}:${c.bodyLength ?? ''}`;
}

/** Every body hash the requests need, in one read of the body; keyed by bodyKey. */
export async function hashBodies(message: Message, requests: readonly BodyHashRequest[], signal?: AbortSignal): Promise<Map<string, BodyHash>> {
  const hashes = new Map<string, BodyHash>();
  // Signatures that differ only in hash or l= share one canonicalization.
  const canonicalizers = new Map<string, { canon: BodyCanonicalizer; hashes: BodyHash[] }>();
  for (const c of requests) {
    const key = bodyKey(c);
    if (hashes.has(key)) continue;
    const h: BodyHash = { hash: createHash(c.hashAlgo), limit: c.bodyLength ?? Infinity, hashed: 0 };
    hashes.set(key, h);
    let entry = canonicalizers.get(c.bodyCanon);
    if (!entry) {
      const group: BodyHash[] = [];
      entry = {
        canon: new BodyCanonicalizer(c.bodyCanon, (bytes) => {
          for (const g of group) feed(g, bytes);
        }),
        hashes: group,
      };
      canonicalizers.set(c.bodyCanon, entry);
    }
    entry.hashes.push(h);
  }
  if (!canonicalizers.size) return hashes;
  for await (const chunk of message.openBody()) {
    signal?.throwIfAborted();
    for (const e of canonicalizers.values()) e.canon.update(chunk as Buffer);
  }
  for (const e of canonicalizers.values()) {
    e.canon.end();
    for (const h of e.hashes) {
      h.digest = h.hash.digest('base64');
      h.total = e.canon.length;
    }
  }
  return hashes;
}

function feed(h: BodyHash, bytes: Buffer): void {
  const take = Math.min(bytes.length, h.limit - h.hashed);
  if (take <= 0) return;
  h.hash.update(take === bytes.length ? bytes : bytes.subarray(0, take));
  h.hashed += take;
}
