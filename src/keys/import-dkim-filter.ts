/**
 * The dkim-filter / dk-filter key list (dkim-filter.conf(5) KeyList; amavisd-new's
 * convert_keysfile reads the same): lines `sender-pattern:signing-domain:keypath`, first
 * match first. The selector is the file name part of keypath; the key is keypath,
 * keypath.pem or keypath.private, the first that exists (as dkim-filter looks for it).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { authorOfPattern, type ImportCollector } from './import-tables';

export function importDkimFilter(file: string, into: ImportCollector): void {
  const rules: { where: string; author: string }[] = [];
  readFileSync(file, 'utf8')
    .split(/\r?\n/)
    .forEach((raw, i) => {
      const where = `${file}:${i + 1}`;
      const line = raw.replace(/#.*/, '').trim();
      if (!line) return;
      const [pattern, domain, ...rest] = line.split(':');
      const keyPath = rest.join(':');
      if (!pattern || !domain || !keyPath) {
        into.problem(where, `expected "sender-pattern:signing-domain:keypath" (not converted)`);
        return;
      }
      const rule = authorOfPattern(pattern);
      if ('why' in rule) {
        into.problem(where, `${rule.why} (not converted)`);
        return;
      }
      const keyFile = path.resolve(path.dirname(file), keyPath);
      const found = [keyFile, `${keyFile}.pem`, `${keyFile}.private`].find((f) => existsSync(f)) ?? keyFile;
      const selector = path.basename(keyPath);
      into.addRule(where, rule.author, into.addKey(where, `${domain}-${selector}`, domain.toLowerCase(), selector, found));
      rules.push({ where, author: rule.author });
    });
  into.noteShadowed(rules);
}
