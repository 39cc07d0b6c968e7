/**
 * Makes every signature for one message in one read of the body: the DKIM body hash (one
 * canonicalization per message, shared by all its DKIM signatures) and the DomainKeys
 * hashes stream side by side, then the DKIM signatures are made (signature.ts signData says
 * which run on the event loop and which in the thread pool). Returns the new fields,
 * DKIM-Signature first, ready to prepend.
 *
 * Rejects with the abort reason or the crypto error; the stage reports it as DKIM_SIGN_FAILED.
 */
import { createHash, type KeyObject } from 'node:crypto';
import type { Author } from '../author';
import { BodyCanonicalizer, type DkimCanonicalization } from './canonicalization';
import { DomainKeysSigner } from './domainkeys';
import { createDkimSignature, signedHeaderNames, type DkimAlgorithm } from './signature';
import type { HeaderField, Message } from '../../transaction/message';

/** What signing needs of a key (keys/key-store.ts SigningKey has it). */
export interface DkimSigningKey {
  readonly domain: string;
  readonly selector: string;
  readonly algorithm: DkimAlgorithm;
  readonly privateKey: KeyObject;
  /** Legacy DomainKeys signature beside the DKIM one. */
  readonly domainKeys: 'off' | 'simple' | 'nofws';
}

/** The signature options of a bank's dkimSign.signature (or a bySender entry merged over it). */
export interface SignatureOptions {
  readonly canonicalization: string;
  readonly ttlSeconds: number;
  readonly timestamp: boolean;
  readonly identity: 'none' | 'author';
  readonly bodyLength: boolean;
  readonly signedHeaderFields: readonly string[];
  readonly oversignedHeaderFields: readonly string[];
}

export interface SignedFields {
  readonly fields: string[];
  /** One entry per signature, for the log line: "d=example.com s=sel rsa-sha256". */
  readonly summary: string[];
}

const LOCAL_PART = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+$/;

export async function signMessage(
  msg: Message,
  keys: readonly DkimSigningKey[],
  opts: SignatureOptions,
  author: Author | null,
  now: Date,
  signal: AbortSignal,
): Promise<SignedFields> {
  const [headerCanon, bodyCanon] = opts.canonicalization.split('/') as [DkimCanonicalization, DkimCanonicalization];
  const bodyHash = createHash('sha256');
  const body = new BodyCanonicalizer(bodyCanon, (bytes) => bodyHash.update(bytes));
  const signedNames = signedHeaderNames(msg.fields, opts.signedHeaderFields, opts.oversignedHeaderFields);
  const domainKeys = keys
    .filter((k) => k.domainKeys !== 'off')
    .map((k) => ({
      key: k,
      signer: new DomainKeysSigner(msg.fields, {
        privateKey: k.privateKey,
        domain: k.domain,
        selector: k.selector,
        canon: k.domainKeys === 'simple' ? 'simple' : 'nofws',
        names: opts.signedHeaderFields,
      }),
    }));

  for await (const chunk of msg.openBody()) {
    signal.throwIfAborted();
    body.update(chunk as Buffer);
    for (const dk of domainKeys) dk.signer.body.update(chunk as Buffer);
  }
  body.end();

  const t = Math.floor(now.getTime() / 1000);
  const bh = bodyHash.digest('base64');
  const dkim = await Promise.all(
    keys.map((k) =>
      createDkimSignature(msg.fields, {
        algorithm: k.algorithm,
        privateKey: k.privateKey,
        domain: k.domain,
        selector: k.selector,
        headerCanon,
        bodyCanon,
        bodyHash: bh,
        signedNames,
        timestamp: opts.timestamp ? t : undefined,
        expiration: opts.ttlSeconds > 0 ? t + opts.ttlSeconds : undefined,
        identity: opts.identity === 'author' ? identityFor(author, k.domain) : undefined,
        bodyLength: opts.bodyLength ? body.length : undefined,
      }),
    ),
  );
  signal.throwIfAborted();
  return {
    fields: [...dkim, ...domainKeys.map((dk) => dk.signer.finish())],
    summary: [...keys.map((k) => `d=${k.domain} s=${k.selector} ${k.algorithm}`), ...domainKeys.map((dk) => `d=${dk.key.domain} s=${dk.key.selector} domainkeys`)],
  };
}

/** The message with the new fields on top, every other byte as it was. */
export function withSignatures(msg: Message, signed: SignedFields): Message {
  const added: HeaderField[] = signed.fields.map((raw) => {
    const name = raw.slice(0, raw.indexOf(':'));
    return { name, key: name.toLowerCase(), raw: Buffer.from(raw, 'latin1') };
  });
  return msg.withFields([...added, ...msg.fields]);
}

/** i= is the author when it lies within d= (RFC 6376 3.5); an unusual local part gives @domain. */
function identityFor(author: Author | null, domain: string): string | undefined {
  if (!author || (author.domain !== domain && !author.domain.endsWith(`.${domain}`))) return undefined;
  const local = author.address.slice(0, author.address.lastIndexOf('@'));
  return LOCAL_PART.test(local) ? author.address : `@${author.domain}`;
}
