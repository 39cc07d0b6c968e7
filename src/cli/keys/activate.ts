/**
 * `postseal keys activate --domain D --selector S`: the rotation step. Refuses unless
 * `keys test` passes for the key and the signing table keeps an active key in every rule;
 * then writes the new states into the key table (keys/activate.ts), checks that the whole
 * configuration still loads (restoring the file if not), and says how to apply it.
 */
import { loadConfig } from '../../config/load';
import { isPostsealError } from '../../errors';
import { planActivation, restoreKeyTable, writeKeyStates } from '../../keys/activate';
import { formatKeyTest, testKey } from '../../keys/key-test';
import { normalizeDomain } from '../../lib/author';
import { loadOrExplain, parse, UsageError } from '../args';
import { holdingProcess, keyTestDeps } from './common';

export const usage = 'keys activate --domain D --selector S [--config FILE]';

export const help = `Usage: postseal keys activate --domain D --selector S [--config FILE]

Makes the key with d=D s=S the one that signs: it becomes active, and the active keys of the
same domain and algorithm become retiring (no longer used, still published). Refuses when
postseal keys test fails for the key, or when a signing table rule would be left without an
active key. Edits the key table file in place (comments stay); send SIGHUP to the running
postseal to apply it. Exit status: 0 activated (or already active), 1 refused.`;

export async function run(args: string[]): Promise<number> {
  const { values, help: h } = parse(args, { config: { type: 'string', short: 'c' }, domain: { type: 'string' }, selector: { type: 'string' } }, help);
  if (h) {
    process.stdout.write(`${h}\n`);
    return 0;
  }
  if (!values.domain || !values.selector) throw new UsageError(`keys activate needs --domain and --selector\n\n${help}`);
  const config = loadOrExplain(values.config);
  if (!config) return 1;
  const domain = normalizeDomain(values.domain);
  const selector = values.selector.toLowerCase();
  const key = config.keys.keys.find((k) => k.domain === domain && k.selector === selector);
  if (!key) {
    process.stderr.write(`postseal: no key with d=${domain} s=${selector} in ${config.keys.files?.keyTableFile ?? 'the configuration (no key table)'}\n`);
    return 1;
  }
  if (key.state === 'active') {
    process.stdout.write(`${key.name} (d=${domain} s=${selector}) is already active\n`);
    return 0;
  }
  const tested = await holdingProcess(testKey(key, keyTestDeps(config)));
  process.stdout.write(`${formatKeyTest(tested)}\n`);
  if (!tested.passed) {
    process.stderr.write(`postseal: not activated: ${tested.record} does not pass postseal keys test\n`);
    return 1;
  }
  const plan = planActivation(config.keys, key);
  if (plan.problems.length) {
    process.stderr.write(`postseal: not activated:\n${plan.problems.join('\n')}\n`);
    return 1;
  }
  const keyTableFile = config.keys.files!.keyTableFile;
  const before = writeKeyStates(keyTableFile, plan.changes);
  try {
    loadConfig(config.file);
  } catch (err) {
    restoreKeyTable(keyTableFile, before);
    if (!isPostsealError(err)) throw err;
    process.stderr.write(`postseal: not activated, ${keyTableFile} restored: configuration error ${err.code}\n${err.message}\n`);
    return 1;
  }
  for (const c of plan.changes) process.stdout.write(`${c.key.name} (d=${c.key.domain} s=${c.key.selector} ${c.key.algorithm}): ${c.key.state} -> ${c.to}\n`);
  process.stdout.write(
    `${keyTableFile} updated. Send SIGHUP to postseal to apply it (kill -HUP <pid>); keep the records of retiring keys published for a few days, until mail signed with them has been delivered.\n`,
  );
  return 0;
}
