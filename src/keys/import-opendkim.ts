/**
 * OpenDKIM's KeyTable and SigningTable (opendkim.conf(5)) as postseal keys and rules.
 *
 * - KeyTable: `name domain:selector:keyfile`; a domain of `%` means the From domain.
 * - SigningTable as `refile:FILE`: sender patterns with `*`, matched against the From
 *   address, first match first (`*@example.com name`, `*@*.example.com name`).
 * - SigningTable as `file:FILE` or a plain path: looked up as user@host, host, user@.parent,
 *   .parent, user@*, * (`example.com name`, `.example.com name`).
 * The SigningTable value is a KeyTable name (`%`: the From domain) and an optional signer
 * for i=. Only KeyTable entries that a SigningTable line uses are converted.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { authorOfPattern, domainRule, type ImportCollector } from './import-tables';

interface KeyTableEntry {
  readonly where: string;
  readonly domain: string;
  readonly selector: string;
  readonly keyFile: string;
}

/** An opendkim.conf dataset: refile:/path, file:/path or /path. Other kinds (db:, ldap:, csl: ...) cannot be read here. */
export function parseDataset(spec: string): { file: string; refile: boolean } {
  const m = /^([a-z]+):(.*)$/.exec(spec);
  if (!m) return { file: spec, refile: false };
  if (m[1] !== 'refile' && m[1] !== 'file') throw new Error(`${spec}: only file: and refile: tables can be imported; dump a ${m[1]}: table to a file first`);
  return { file: m[2], refile: m[1] === 'refile' };
}

export function importOpenDkim(keyTableSpec: string, signingTableSpec: string, into: ImportCollector): void {
  const keyTable = readKeyTable(parseDataset(keyTableSpec).file, into);
  const { file, refile } = parseDataset(signingTableSpec);
  const used = new Set<string>();
  const rules: { where: string; author: string }[] = [];
  for (const { where, fields } of tableLines(file)) {
    const [pattern, value, signer] = fields;
    const rule = refile ? authorOfPattern(pattern) : plainRule(pattern);
    if ('why' in rule) {
      into.problem(where, `${rule.why} (not converted)`);
      continue;
    }
    if (!value) {
      into.problem(where, `"${pattern}" names no key (not converted)`);
      continue;
    }
    const exact = !rule.author.startsWith('*.');
    if (value === '%' && !exact) {
      into.problem(where, `% stands for the From domain, which a wildcard cannot give (not converted)`);
      continue;
    }
    const name = value === '%' ? rule.author : value;
    const entry = keyTable.get(name);
    if (!entry) {
      into.problem(where, `no key "${name}" in the KeyTable (not converted)`);
      continue;
    }
    if (entry.domain === '%' && !exact) {
      into.problem(where, `key "${name}" signs with d= of each From domain, which postseal cannot do for ${rule.author}; list those domains (not converted)`);
      continue;
    }
    used.add(name);
    if (signer) into.note(where, `the signer ${signer} (i=) is not converted; postseal sets i= per bank (dkimSign.signature.identity)`);
    const domain = entry.domain === '%' ? rule.author : entry.domain;
    const wanted = entry.domain === '%' ? `${name}-${domain}` : name;
    into.addRule(where, rule.author, into.addKey(entry.where, wanted, domain, entry.selector, entry.keyFile));
    rules.push({ where, author: rule.author });
  }
  if (refile) into.noteShadowed(rules);
  for (const [name, entry] of keyTable) if (!used.has(name)) into.note(entry.where, `key "${name}" is used by no SigningTable line (not converted)`);
}

function readKeyTable(file: string, into: ImportCollector): Map<string, KeyTableEntry> {
  const keys = new Map<string, KeyTableEntry>();
  for (const { where, fields } of tableLines(file)) {
    const [name, value = ''] = fields;
    const [domain, selector, ...rest] = value.split(':');
    const keyPath = rest.join(':');
    if (!domain || !selector || !keyPath) {
      into.problem(where, `expected "name domain:selector:keyfile" (not converted)`);
      continue;
    }
    const keyFile = path.resolve(path.dirname(file), keyPath);
    if (!keyPath.startsWith('/') && !existsSync(keyFile)) {
      into.problem(where, `"${keyPath}" is not a key file (key data written into the KeyTable is not imported: save it as a PEM file)`);
      continue;
    }
    keys.set(name, { where, domain: domain === '%' ? '%' : domain.toLowerCase(), selector, keyFile });
  }
  return keys;
}

/** A plain SigningTable key: host, .parent, or what postseal cannot express. */
function plainRule(key: string): { author: string } | { why: string } {
  if (key === '*') return { why: `"*" is a catch-all; postseal signs only the domains its signing table lists` };
  if (key.startsWith('*@')) return { why: `"${key}" is a refile: pattern, which a plain SigningTable never matches; give the table as refile:FILE` };
  if (key.includes('@')) return { why: `"${key}" is a per-user rule; postseal chooses keys by author domain only` };
  return domainRule(key.startsWith('.') ? `*${key}` : key, key);
}

/** Non-empty lines of an OpenDKIM table split into fields, with "file:line" for messages. */
function tableLines(file: string): { where: string; fields: string[] }[] {
  return readFileSync(file, 'utf8')
    .split(/\r?\n/)
    .map((line, i) => ({ where: `${file}:${i + 1}`, fields: line.replace(/#.*/, '').trim().split(/\s+/).filter(Boolean) }))
    .filter((l) => l.fields.length > 0);
}
