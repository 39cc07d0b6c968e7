/**
 * The structure of an ARC chain (RFC 8617 4.1, 4.2.1, 5.2 steps 1-3), before any key is
 * looked up or anything is hashed: the ARC sets are collected, counted, numbered and checked
 * against the tag-list grammar. Whatever fails here fails without DNS and without crypto.
 *
 * - More than 50 fields of any ARC kind (RFC 8617 4.2.1: instances 1..50), or a chain that
 *   would need more than `maxSignatures` signatures (its seals and the newest
 *   ARC-Message-Signature), fails before a tag list is parsed.
 * - Instances are 1*2DIGIT from 1 to 50 (3.9), exactly one ARC-Seal, ARC-Message-Signature
 *   and ARC-Authentication-Results each, numbered 1..N without gaps (5.2 step 3).
 * - The newest seal with cv=fail ends the chain (step 2); otherwise i=1 has cv=none and
 *   every later set cv=pass (3.C), compared without case as an ABNF string is.
 * - Every ARC-Seal and the newest ARC-Message-Signature are read strictly (RFC 6376 3.2 via
 *   lib/dkim/tag-list.ts): a duplicate tag, an empty tag-spec (";;"), a tag name that does
 *   not start with a letter fail; tag names are case-sensitive, so "CV=" is not cv= and cv=
 *   is missing. Required tags: i a b cv d s (seal), i a b bh d h s (AMS); a= is rsa-sha256
 *   or ed25519-sha256; a seal has no h= (4.1.3); the AMS does not sign ARC-Seal (4.1.2);
 *   a missing c= on the AMS means simple/simple (RFC 6376 3.5), never a second try.
 *
 * Older ARC-Message-Signatures are sealed data only (5.2 step 4 checks the newest one):
 * only their instance is read.
 */
import type { DkimCanonicalization } from '../dkim/canonicalization';
import { tagsOf, type TagList } from '../dkim/tag-list';
import type { HeaderField, Message } from '../../transaction/message';

/** RFC 8617 4.2.1: "The value of the instance tag ... is limited to 50" in practice i=1..50. */
export const MAX_ARC_SETS = 50;

export interface ArcSet {
  readonly instance: number;
  readonly aar: HeaderField;
  readonly ams: HeaderField;
  readonly seal: HeaderField;
  readonly sealTags: TagList;
  readonly sealAlgo: 'rsa' | 'ed25519';
}

/** The newest ARC-Message-Signature, ready to verify. */
export interface MessageSignature {
  readonly field: HeaderField;
  readonly d: string;
  readonly s: string;
  readonly b: string;
  readonly signAlgo: 'rsa' | 'ed25519';
  readonly headerCanon: DkimCanonicalization;
  readonly bodyCanon: DkimCanonicalization;
  readonly signedNames: readonly string[];
  readonly bodyHash: string;
  readonly bodyLength?: number;
}

export type ArcChain =
  | { readonly kind: 'none' }
  | { readonly kind: 'fail'; readonly instance: number; readonly reason: string }
  | { readonly kind: 'chain'; readonly sets: readonly ArcSet[]; readonly ams: MessageSignature };

const KINDS = ['arc-authentication-results', 'arc-message-signature', 'arc-seal'] as const;
type Kind = (typeof KINDS)[number];
const SHORT: Record<Kind, string> = { 'arc-authentication-results': 'AAR', 'arc-message-signature': 'AMS', 'arc-seal': 'AS' };
const INSTANCE = /^[0-9]{1,2}$/;
const ALGORITHMS: Record<string, 'rsa' | 'ed25519'> = { 'rsa-sha256': 'rsa', 'ed25519-sha256': 'ed25519' };
const CANONICALIZATIONS = new Set(['simple', 'relaxed']);
const TIMESTAMP = /^[0-9]{1,12}$/;
const BODY_LENGTH = /^[0-9]{1,76}$/;
const SEAL_REQUIRED = ['i', 'a', 'b', 'cv', 'd', 's'];
const AMS_REQUIRED = ['i', 'a', 'b', 'bh', 'd', 'h', 's'];
/** RFC 8617 4.1.1: arc-info = instance [CFWS] ";" authres-payload; CFWS with unnested comments. */
const CFWS = '(?:[ \\t\\r\\n]|\\([^()\\\\]*\\))*';
const AAR_INSTANCE = new RegExp(`^${CFWS}i${CFWS}=${CFWS}([0-9]{1,2})${CFWS};`);

class ChainError extends Error {
  constructor(
    readonly instance: number,
    reason: string,
  ) {
    super(reason);
  }
}

export function collectChain(message: Message, maxSignatures: number): ArcChain {
  const fields = Object.fromEntries(KINDS.map((k) => [k, message.get(k)])) as Record<Kind, HeaderField[]>;
  const most = Math.max(...KINDS.map((k) => fields[k].length));
  if (most === 0) return { kind: 'none' };
  // Counted, not parsed: a thousand ARC fields cost a thousand comparisons, nothing more.
  if (most > MAX_ARC_SETS) return { kind: 'fail', instance: 0, reason: `more than ${MAX_ARC_SETS} ARC sets` };
  if (fields['arc-seal'].length + 1 > maxSignatures)
    return { kind: 'fail', instance: 0, reason: `${fields['arc-seal'].length} ARC sets need more than ${maxSignatures} signature checks (dkimVerify.maxSignatures)` };
  try {
    return structure(fields);
  } catch (err) {
    if (err instanceof ChainError) return { kind: 'fail', instance: err.instance, reason: err.message };
    throw err;
  }
}

function structure(fields: Record<Kind, HeaderField[]>): ArcChain {
  const sets = new Map<number, Partial<Record<Kind, HeaderField>> & { sealTags?: TagList }>();
  for (const kind of KINDS) {
    for (const field of fields[kind]) {
      const tags = kind === 'arc-seal' ? tagsOf(field) : undefined;
      const instance = instanceOf(kind, field, tags);
      const set = sets.get(instance) ?? {};
      if (set[kind]) throw new ChainError(instance, `i=${instance} has more than one ${SHORT[kind]}`);
      set[kind] = field;
      if (tags) set.sealTags = tags;
      sets.set(instance, set);
    }
  }
  const n = Math.max(...sets.keys());
  const out: ArcSet[] = [];
  for (let i = 1; i <= n; i++) {
    const set = sets.get(i);
    const absent = KINDS.find((k) => !set?.[k]);
    if (absent) throw new ChainError(n, `i=${i} has no ${SHORT[absent]}`);
    out.push({ instance: i, aar: set!['arc-authentication-results']!, ams: set!['arc-message-signature']!, seal: set!['arc-seal']!, sealTags: set!.sealTags!, sealAlgo: 'rsa' });
  }
  // Step 2: a chain that a sealer already declared failed stays failed.
  if (cvOf(out[n - 1].sealTags) === 'fail') throw new ChainError(n, `i=${n} cv=fail`);
  const checked = out.map((set) => ({ ...set, sealAlgo: checkSeal(set) }));
  return { kind: 'chain', sets: checked, ams: checkMessageSignature(out[n - 1]) };
}

function instanceOf(kind: Kind, field: HeaderField, tags: TagList | undefined): number {
  let raw: string | undefined;
  if (kind === 'arc-authentication-results') {
    const text = field.raw.toString('latin1');
    raw = AAR_INSTANCE.exec(text.slice(text.indexOf(':') + 1))?.[1];
  } else {
    raw = (tags ?? tagsOf(field)).raw.get('i');
  }
  const instance = raw !== undefined && INSTANCE.test(raw) ? Number(raw) : 0;
  if (instance < 1 || instance > MAX_ARC_SETS) throw new ChainError(0, `${SHORT[kind]} with an invalid instance`);
  return instance;
}

function cvOf(tags: TagList): string {
  return (tags.raw.get('cv') ?? '').toLowerCase();
}

/** The tag list of one ARC-Seal; returns its signing algorithm. */
function checkSeal(set: ArcSet): 'rsa' | 'ed25519' {
  const { raw, syntaxErrors } = set.sealTags;
  const fail = (why: string) => new ChainError(set.instance, `i=${set.instance} AS ${why}`);
  if (syntaxErrors.length) throw fail(`tag syntax: ${syntaxErrors[0]}`);
  const missing = SEAL_REQUIRED.find((t) => !raw.has(t));
  if (missing) throw fail(`missing ${missing}=`);
  const cv = cvOf(set.sealTags);
  const expected = set.instance === 1 ? 'none' : 'pass';
  if (cv !== expected) throw fail(`cv=${cv}, expected cv=${expected}`);
  if (raw.has('h')) throw fail('has h=');
  if (raw.has('t') && !TIMESTAMP.test(raw.get('t')!)) throw fail('invalid t=');
  if (!raw.get('d') || !raw.get('s') || !raw.get('b')) throw fail('empty d=, s= or b=');
  const algo = ALGORITHMS[raw.get('a')!.toLowerCase()];
  if (!algo) throw fail(`unsupported a=${raw.get('a')}`);
  return algo;
}

function checkMessageSignature(set: ArcSet): MessageSignature {
  const { parsed, raw, syntaxErrors } = tagsOf(set.ams);
  const fail = (why: string) => new ChainError(set.instance, `i=${set.instance} AMS ${why}`);
  if (syntaxErrors.length) throw fail(`tag syntax: ${syntaxErrors[0]}`);
  const missing = AMS_REQUIRED.find((t) => !raw.has(t));
  if (missing) throw fail(`missing ${missing}=`);
  const signAlgo = ALGORITHMS[raw.get('a')!.toLowerCase()];
  if (!signAlgo) throw fail(`unsupported a=${raw.get('a')}`);
  // RFC 6376 3.5: "Default is "simple/simple"". "relaxed" alone is relaxed/simple.
  const [headerCanon, bodyCanon = 'simple'] = (raw.get('c') ?? 'simple').toLowerCase().split('/');
  if (!CANONICALIZATIONS.has(headerCanon) || !CANONICALIZATIONS.has(bodyCanon)) throw fail(`unknown c=${raw.get('c')}`);
  const signedNames = String(parsed.h?.value ?? '')
    .split(':')
    .map((n) => n.trim().toLowerCase())
    .filter(Boolean);
  if (!signedNames.length) throw fail('empty h=');
  if (signedNames.includes('arc-seal')) throw fail('signs ARC-Seal');
  if (raw.has('l') && !BODY_LENGTH.test(raw.get('l')!)) throw fail('invalid l=');
  if (['t', 'x'].some((t) => raw.has(t) && !TIMESTAMP.test(raw.get(t)!))) throw fail('invalid t= or x=');
  const [d, s] = [raw.get('d')!, raw.get('s')!];
  const b = String(parsed.b?.value ?? '');
  if (!d || !s || !b) throw fail('empty d=, s= or b=');
  return {
    field: set.ams,
    d,
    s,
    b,
    signAlgo,
    headerCanon: headerCanon as DkimCanonicalization,
    bodyCanon: bodyCanon as DkimCanonicalization,
    signedNames,
    bodyHash: String(parsed.bh?.value ?? '').replace(/[ \t\r\n]/g, ''),
    ...(raw.has('l') ? { bodyLength: Number(raw.get('l')) } : {}),
  };
}
