/**
 * `postseal keys show [DOMAIN...]` (amavisd showkeys): the DNS record of every configured
 * key, derived from its private key, in zone-file form; each after a comment naming the key,
 * its state and its file. Staged and retiring keys are listed too: they must be published.
 */
import { keyRecordText, zoneRecord } from '../../lib/dkim-key-record';
import { loadOrExplain, parse } from '../args';
import { selectKeys } from './common';

export const usage = 'keys show [DOMAIN...] [--config FILE]';

export const help = `Usage: postseal keys show [DOMAIN...] [--config FILE]

Prints the TXT record to publish for every key of the key table (or those with d=DOMAIN),
in zone-file form, whatever the key's state: staged keys must be published before they are
activated, retiring keys until mail signed with them has been delivered.`;

export async function run(args: string[]): Promise<number> {
  const { values, positionals, help: h } = parse(args, { config: { type: 'string', short: 'c' } }, help);
  if (h) {
    process.stdout.write(`${h}\n`);
    return 0;
  }
  const config = loadOrExplain(values.config);
  if (!config) return 1;
  const keys = selectKeys(config, positionals);
  if (!keys) return 1;
  const records = keys.map(
    (k) => `; ${k.name}: d=${k.domain} s=${k.selector} ${k.algorithm}, ${k.state}, ${k.keyFile}\n${zoneRecord(k.domain, k.selector, keyRecordText(k.privateKey))}\n`,
  );
  process.stdout.write(records.join('\n'));
  return 0;
}
