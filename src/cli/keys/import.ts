/**
 * `postseal keys import` (amavisd convert_keysfile): OpenDKIM's KeyTable + SigningTable
 * and/or a dkim-filter key list into postseal's key table and signing table, written to
 * --out DIR or to standard output; what could not be converted goes to standard error with
 * its file and line.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { importDkimFilter } from '../../keys/import-dkim-filter';
import { importOpenDkim } from '../../keys/import-opendkim';
import { ImportCollector, importedYaml } from '../../keys/import-tables';
import { parse, UsageError } from '../args';

export const usage = 'keys import --opendkim-keytable FILE --opendkim-signingtable [refile:]FILE | --dkim-filter-keylist FILE [--out DIR]';

export const help = `Usage: postseal keys import --opendkim-keytable FILE --opendkim-signingtable [refile:]FILE
                            [--dkim-filter-keylist FILE] [--out DIR] [--force]

Converts OpenDKIM's KeyTable and SigningTable (give the SigningTable as in opendkim.conf:
refile:FILE for a table of *@domain patterns, FILE for one of plain domains), and/or a
dkim-filter/dk-filter key list (*@domain:domain:/path/selector), into postseal's key table
and signing table. With --out DIR writes DIR/key-table.yaml and DIR/signing-table.yaml
(kept if they exist, unless --force); without it prints both to standard output.
Rules postseal cannot express (per-user patterns, catch-alls, other wildcards) and keys it
cannot read are listed on standard error with file and line; differences in behaviour are
listed as notes. Exit status: 0 everything converted, 1 something was not (the rest is
still written) or an input could not be read, 2 usage error.`;

export async function run(args: string[]): Promise<number> {
  const { values, help: h } = parse(
    args,
    {
      'opendkim-keytable': { type: 'string' },
      'opendkim-signingtable': { type: 'string' },
      'dkim-filter-keylist': { type: 'string' },
      out: { type: 'string' },
      force: { type: 'boolean', default: false },
    },
    help,
  );
  if (h) {
    process.stdout.write(`${h}\n`);
    return 0;
  }
  const keyTable = values['opendkim-keytable'];
  const signingTable = values['opendkim-signingtable'];
  const keyList = values['dkim-filter-keylist'];
  if (!keyTable !== !signingTable) throw new UsageError(`--opendkim-keytable and --opendkim-signingtable go together\n\n${help}`);
  if (!keyTable && !keyList) throw new UsageError(`keys import needs the OpenDKIM tables or a dkim-filter key list\n\n${help}`);
  const into = new ImportCollector();
  try {
    if (keyTable && signingTable) importOpenDkim(keyTable, signingTable, into);
    if (keyList) importDkimFilter(keyList, into);
  } catch (err) {
    process.stderr.write(`postseal: nothing imported: ${(err as Error).message}\n`);
    return 1;
  }
  const result = into.result();
  const sources = [keyTable, signingTable, keyList].filter((s): s is string => !!s);
  const yaml = importedYaml(result, sources);
  if (values.out) {
    const files = { keyTable: path.resolve(values.out, 'key-table.yaml'), signingTable: path.resolve(values.out, 'signing-table.yaml') };
    const existing = Object.values(files).filter((f) => existsSync(f));
    if (existing.length && !values.force) {
      process.stderr.write(`postseal: ${existing.join(' and ')} exist; keeping them (use --force to replace them)\n`);
      return 1;
    }
    mkdirSync(values.out, { recursive: true });
    writeFileSync(files.keyTable, yaml.keyTable);
    writeFileSync(files.signingTable, yaml.signingTable);
    process.stderr.write(`postseal: wrote ${files.keyTable} and ${files.signingTable}; name them in postseal.yaml as dkimSign.keyTableFile and dkimSign.signingTableFile\n`);
  } else {
    process.stdout.write(`# key-table.yaml\n${yaml.keyTable}---\n# signing-table.yaml\n${yaml.signingTable}`);
  }
  for (const p of result.problems) process.stderr.write(`${p.where}: ${p.text}\n`);
  for (const n of result.notes) process.stderr.write(`${n.where}: note: ${n.text}\n`);
  const summary = `${Object.keys(result.keyTable).length} keys and ${result.signingTable.length} rules converted`;
  process.stderr.write(`postseal: ${summary}${result.problems.length ? `; ${result.problems.length} entries need attention (above)` : ''}\n`);
  return result.problems.length ? 1 : 0;
}
