/**
 * The banned rules of a bank, compiled once, and amavisd's way of applying them
 * (Amavis::Unpackers::Validity check_for_banned_names): a leaf part is described by the keys
 * of every part on its path, from the message down to it (its multiparts, its archives, then
 * itself); the first rule in the list that matches any of those keys decides, allow or deny.
 * So `{ allow: '^\.zip$', on: type }` first lets everything inside a zip through, as amavisd's
 * `[qr'^\.zip$' => 0]` did. Keys: file names (normalized, names.ts; the raw name too when it
 * differs), detected types with a leading dot as amavisd writes them (".exe-ms"), declared
 * MIME types, and UNDECIPHERABLE for a part that could not be read (amavisd's A=U).
 *
 * Patterns are JavaScript regular expressions, always case-insensitive (Windows names and
 * MIME types are). A pattern that does not compile, or is written in Perl's syntax
 * (config/patterns.ts), is refused at load (index.ts check).
 */
import { compilePattern } from '../../config/patterns';
import type { ContentNode } from '../../lib/archive/expand';
import { extensionOf, normalizeName } from './names';
import type { BannedRule } from './schema';

export type KeyKind = 'name' | 'type' | 'declaredType';

export interface CompiledRule {
  /** 1-based, as the postmaster counts the list. */
  readonly number: number;
  readonly allow: boolean;
  readonly re: RegExp;
  readonly on: 'any' | KeyKind;
  readonly pattern: string;
  readonly comment: string;
}

export interface RuleMatch {
  readonly rule: CompiledRule;
  readonly kind: KeyKind;
  readonly key: string;
}

/** Counts regular expression tests, for the tests that check the work stays linear. */
export interface RuleWork {
  tests: number;
}

/** Compiles the list; throws a SyntaxError naming the rule for a bad pattern, or one with neither or both of deny and allow. */
export function compileRules(rules: readonly Partial<BannedRule>[]): CompiledRule[] {
  return rules.map((r, i) => {
    const compiled = compileRule(r, i + 1);
    if ('problem' in compiled) throw new SyntaxError(`rule ${i + 1}: ${compiled.problem}`);
    return compiled;
  });
}

/** One rule compiled, or what is wrong with it and the key at fault (deny, allow, or '' for the rule as a whole). */
export function compileRule(r: Partial<BannedRule>, number: number): CompiledRule | { key: '' | 'deny' | 'allow'; problem: string } {
  const deny = r.deny ?? '';
  const allow = r.allow ?? '';
  if ((deny === '') === (allow === '')) return { key: '', problem: 'give exactly one of deny and allow' };
  const pattern = deny || allow;
  try {
    // Perl quotes and escapes pasted from amavisd.conf are refused: they would never match.
    const re = compilePattern(pattern);
    return { number, allow: deny === '', re, on: r.on ?? 'any', pattern, comment: r.comment ?? '' };
  } catch (err) {
    return { key: deny ? 'deny' : 'allow', problem: (err as Error).message };
  }
}

interface Keys {
  readonly name: readonly string[];
  readonly type: readonly string[];
  readonly declaredType: readonly string[];
}

function keysOf(node: ContentNode): Keys {
  const name: string[] = [];
  for (const n of node.names) {
    const clean = normalizeName(n);
    if (clean) name.push(clean);
    if (clean !== n) name.push(n);
  }
  const type = node.types.map((t) => `.${t}`);
  if (node.limit || node.problem || node.encrypted) type.push('UNDECIPHERABLE');
  return { name, type, declaredType: node.declaredTypes };
}

const KINDS: readonly KeyKind[] = ['name', 'type', 'declaredType'];

/** The first of `rules` before rule number `before` that matches one of the node's own keys. */
export function firstMatch(rules: readonly CompiledRule[], node: ContentNode, before: number, work: RuleWork): RuleMatch | null {
  const keys = keysOf(node);
  for (const rule of rules) {
    if (rule.number >= before) return null;
    for (const kind of KINDS) {
      if (rule.on !== 'any' && rule.on !== kind) continue;
      for (const key of keys[kind]) {
        work.tests++;
        if (rule.re.test(key)) return { rule, kind, key };
      }
    }
  }
  return null;
}

/**
 * The deciding match of every leaf: walks the tree once, handing each node the best match of
 * its ancestors, so a node only tries the rules before that one (work linear in the parts).
 */
export function decideLeaves(rules: readonly CompiledRule[], root: ContentNode, work: RuleWork): { node: ContentNode; match: RuleMatch | null }[] {
  const out: { node: ContentNode; match: RuleMatch | null }[] = [];
  const stack: { node: ContentNode; inherited: RuleMatch | null }[] = [{ node: root, inherited: null }];
  while (stack.length) {
    const { node, inherited } = stack.pop()!;
    const own = firstMatch(rules, node, inherited?.rule.number ?? Number.POSITIVE_INFINITY, work);
    const best = own ?? inherited;
    if (node.children.length === 0) out.push({ node, match: best });
    for (let i = node.children.length - 1; i >= 0; i--) stack.push({ node: node.children[i], inherited: best });
  }
  return out;
}

/** What a reply may say a match was: a plain extension, a detected or declared type. */
export function kindOf(m: RuleMatch): string {
  if (m.kind === 'name') return extensionOf(m.key) ?? 'file name';
  if (m.kind === 'type') return m.key === 'UNDECIPHERABLE' ? 'undecipherable part' : m.key;
  // The sender's declared type is not echoed in a reply: a fixed word says what matched.
  return 'declared type';
}
