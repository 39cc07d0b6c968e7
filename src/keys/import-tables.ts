/**
 * What `postseal keys import` builds from OpenDKIM's and dkim-filter's key tables
 * (import-opendkim.ts, import-dkim-filter.ts): keys and author-domain rules, plus what could
 * not be converted, then written as postseal's key table and signing table (keys/schema.ts).
 *
 * The other signers choose keys by sender pattern (`*@example.com`, `*@*.example.com`);
 * postseal by author domain. Patterns of those two shapes convert; per-user patterns, a
 * catch-all and other wildcards cannot and are reported with their file and line.
 */
import { createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { isPublicSuffix, normalizeDomain } from '../lib/author';
import type { DkimAlgorithm } from '../lib/dkim/signature';
import { isSameOrParent } from './key-store';
import type { KeyTable, SigningTable } from './schema';

export interface ImportedKey {
  readonly domain: string;
  readonly selector: string;
  readonly keyFile: string;
  readonly algorithm: DkimAlgorithm;
}

/** "file:line: text" */
export interface ImportNote {
  readonly where: string;
  readonly text: string;
}

export interface ImportResult {
  readonly keyTable: KeyTable;
  readonly signingTable: SigningTable;
  /** Entries not converted, or converted but unusable as they are: the import is incomplete. */
  readonly problems: readonly ImportNote[];
  /** Where postseal will behave differently from the old signer, for the record. */
  readonly notes: readonly ImportNote[];
}

const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** Collects keys and rules in input order; both importers feed one, so their tables merge. */
export class ImportCollector {
  private readonly keys = new Map<string, ImportedKey>();
  private readonly rules = new Map<string, { keys: string[]; where: string }>();
  /** By key file: a file shared by several domains (OpenDKIM's % keys) is read and reported once. */
  private readonly algorithms = new Map<string, DkimAlgorithm>();
  readonly problems: ImportNote[] = [];
  readonly notes: ImportNote[] = [];

  problem(where: string, text: string): void {
    this.problems.push({ where, text });
  }

  note(where: string, text: string): void {
    this.notes.push({ where, text });
  }

  /** Adds a key read from `where` under a free name near `wanted`; the same key twice keeps one name. */
  addKey(where: string, wanted: string, domain: string, selector: string, keyFile: string): string {
    for (const [name, k] of this.keys) if (k.domain === domain && k.selector === selector && k.keyFile === keyFile) return name;
    const base = KEY_NAME.test(wanted) ? wanted : `${domain}-${selector}`.replace(/[^A-Za-z0-9._-]/g, '-');
    let name = base;
    for (let n = 2; this.keys.has(name); n++) name = `${base}-${n}`;
    this.keys.set(name, { domain, selector, keyFile, algorithm: this.algorithmOf(where, keyFile) });
    return name;
  }

  addRule(where: string, author: string, keyName: string): void {
    const rule = this.rules.get(author);
    if (!rule) return void this.rules.set(author, { keys: [keyName], where });
    if (rule.keys.includes(keyName)) return;
    rule.keys.push(keyName);
    this.note(where, `${author} also gets this key (first rule: ${rule.where}); postseal signs with every key of a rule, as OpenDKIM does with MultipleSignatures yes`);
  }

  /** Earlier rules that the old signer matched first (first match wins there; the most specific rule here). */
  noteShadowed(rules: readonly { where: string; author: string }[]): void {
    rules.forEach((later, j) => {
      const earlier = rules.slice(0, j).find((r) => r.author.startsWith('*.') && r.author !== later.author && shadows(r.author.slice(2), later.author));
      if (earlier) this.note(later.where, `${earlier.where} (${earlier.author}) matched these senders first there; postseal prefers this more specific rule for ${later.author}`);
    });
  }

  result(): ImportResult {
    const keyTable: KeyTable = {};
    for (const [name, k] of this.keys) keyTable[name] = { ...k, domainKeys: 'off', state: 'active' };
    const signingTable: SigningTable = [...this.rules].map(([author, rule]) => {
      const domain = author.replace(/^\*\./, '');
      const foreign = rule.keys.filter((n) => !isSameOrParent(this.keys.get(n)!.domain, domain));
      if (foreign.length)
        this.note(rule.where, `${author} is signed with d=${this.keys.get(foreign[0])!.domain}, not its own domain or a parent: thirdParty: true (not aligned for DMARC)`);
      return { author, keys: rule.keys, thirdParty: foreign.length > 0 };
    });
    return { keyTable, signingTable, problems: this.problems, notes: this.notes };
  }

  private algorithmOf(where: string, keyFile: string): DkimAlgorithm {
    let algorithm = this.algorithms.get(keyFile);
    if (algorithm) return algorithm;
    algorithm = 'rsa-sha256';
    try {
      if (createPrivateKey(readFileSync(keyFile)).asymmetricKeyType === 'ed25519') algorithm = 'ed25519-sha256';
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      this.problem(where, `cannot read the key ${keyFile} (${why}); written as rsa-sha256, and postseal config check fails until postseal can read it`);
    }
    this.algorithms.set(keyFile, algorithm);
    return algorithm;
  }
}

/**
 * A sender pattern with `*` wildcards (OpenDKIM refile, dkim-filter KeyList), matched
 * against the whole From address, as an author rule: `*@example.com` -> example.com,
 * `*@*.example.com` -> *.example.com. Anything else: why it cannot be converted.
 */
export function authorOfPattern(pattern: string): { author: string } | { why: string } {
  const p = pattern.toLowerCase();
  if (/^[*@]+$/.test(p)) return { why: `"${pattern}" is a catch-all; postseal signs only the domains its signing table lists` };
  const at = p.lastIndexOf('@');
  if (at < 0) return { why: `"${pattern}" has no @; write *@domain or *@*.domain` };
  if (p.slice(0, at) !== '*') return { why: `"${pattern}" is a per-user rule; postseal chooses keys by author domain only` };
  return domainRule(p.slice(at + 1), pattern);
}

/** example.com or *.example.com, checked as the key store does: no other wildcard, no *.public-suffix. */
export function domainRule(spec: string, original: string): { author: string } | { why: string } {
  const sub = spec.startsWith('*.');
  const domain = normalizeDomain(sub ? spec.slice(2) : spec);
  if (domain.includes('*') || !/^[a-z0-9.-]+$/.test(domain)) return { why: `"${original}": postseal rules are a domain or *.domain; no other wildcards` };
  if (sub ? isPublicSuffix(domain) : !domain.includes('.')) return { why: `"${original}" covers everything under the public suffix ${domain}, a catch-all` };
  return { author: sub ? `*.${domain}` : domain };
}

/** Whether every sender of `author` also matches *@*.parent. */
function shadows(parent: string, author: string): boolean {
  return author.startsWith('*.') ? isSameOrParent(parent, author.slice(2)) : author.endsWith(`.${parent}`);
}

/** The two files' text, each with a comment naming where it came from. */
export function importedYaml(result: ImportResult, sources: readonly string[]): { keyTable: string; signingTable: string } {
  const from = `# Converted by postseal keys import from ${sources.join(', ')}.\n`;
  const keyTable = Object.fromEntries(Object.entries(result.keyTable).map(([n, k]) => [n, { domain: k.domain, selector: k.selector, keyFile: k.keyFile, algorithm: k.algorithm }]));
  const rules = result.signingTable.map((r) => ({ author: r.author, keys: r.keys, ...(r.thirdParty ? { thirdParty: true } : {}) }));
  return {
    keyTable: `# postseal key table (docs/keys.md).\n${from}${YAML.stringify(keyTable)}`,
    signingTable: `# postseal signing table: keys by author (From) domain (docs/keys.md).\n${from}${YAML.stringify(rules)}`,
  };
}
