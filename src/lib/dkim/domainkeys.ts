/**
 * Legacy DomainKeys signing (RFC 4870), sign-only, for sites that still meet verifiers that
 * know nothing newer. The signature covers the header fields h= names, in message order,
 * then the body, in one rsa-sha1 hash: unlike DKIM there is no separate body hash, so the
 * body is fed in as it streams by (`body`) and the signature is made at the end.
 *
 * Canonicalization follows Mail::DKIM's DomainKeys verifier, the one still in use: the
 * header/body separator counts as a body line, and trailing empty lines are dropped.
 */
import { createSign, type KeyObject, type Sign } from 'node:crypto';
import type { HeaderField } from '../../transaction/message';
import { BodyCanonicalizer, canonicalizeHeader } from './canonicalization';
import { foldTags, withSignatureValue } from './signature';

export type DomainKeysCanonicalization = 'simple' | 'nofws';

export interface DomainKeysInput {
  readonly privateKey: KeyObject;
  readonly domain: string;
  readonly selector: string;
  readonly canon: DomainKeysCanonicalization;
  /** Lower-case names of the fields to sign; every instance present is signed. */
  readonly names: readonly string[];
}

export class DomainKeysSigner {
  /** Feed the message body through this, then call `finish`. */
  readonly body: BodyCanonicalizer;
  private readonly hash: Sign = createSign('sha1');
  private readonly signed: HeaderField[];

  constructor(
    fields: readonly HeaderField[],
    private readonly input: DomainKeysInput,
  ) {
    const names = new Set(input.names);
    this.signed = fields.filter((f) => names.has(f.key));
    for (const f of this.signed) this.hash.update(input.canon === 'nofws' ? canonicalizeHeader(f.raw, 'dk-nofws') : canonicalizeHeader(f.raw, 'simple'));
    this.body = new BodyCanonicalizer(input.canon === 'nofws' ? 'dk-nofws' : 'dk-simple', (bytes) => this.hash.update(bytes));
  }

  /**
   * The DomainKey-Signature field, ending in CRLF. Signing here is synchronous (one RSA
   * operation): Node has no asynchronous RSA signature over a digest, and the data itself is
   * the whole message, which must not be held in memory.
   */
  finish(): string {
    this.body.end();
    const b = this.hash.sign(this.input.privateKey).toString('base64');
    const tags: [string, string][] = [
      ['a', 'rsa-sha1'],
      ['c', this.input.canon],
      ['d', this.input.domain],
      ['s', this.input.selector],
      ['q', 'dns'],
      ['h', this.signed.map((f) => f.key).join(':')],
    ];
    return withSignatureValue(foldTags('DomainKey-Signature:', tags, 'b='), b);
  }
}
