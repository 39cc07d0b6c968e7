/**
 * `postseal keys activate --domain D --selector S`: the rotation step. Refuses unless
 * `keys test` passes for the key and the signing table keeps an active key in every rule;
 * then writes the new states into the key table (keys/activate.ts), checks that the whole
 * configuration still loads (restoring the file if not), and says how to apply it. The whole
 * step runs under the key table's lock (keys/key-table-file.ts), reading the table afresh, so
 * two activations cannot interleave; one that finds the lock held is refused (exit 1).
 */
import { loadConfig, type LoadedConfig } from '../../setup';
import { isPostsealError } from '../../errors';
import { planActivation, restoreKeyTable, writeKeyStates } from '../../keys/activate';
import { lockKeyTable } from '../../keys/key-table-file';
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
postseal to apply it. A second activation while one runs is refused (the lock is
<key table>.lock, removed at the end; one left by a process that died is taken over).
Exit status: 0 activated (or already active), 1 refused.`;

export async function run(args: string[]): Promise<number> {
  const { values, help: h } = parse(args, { config: { type: 'string', short: 'c' }, domain: { type: 'string' }, selector: { type: 'string' } }, help);
  if (h) {
    process.stdout.write(`${h}\n`);
    return 0;
  }
  if (!values.domain || !values.selector) throw new UsageError(`keys activate needs --domain and --selector\n\n${help}`);
  const first = loadOrExplain(values.config);
  if (!first) return 1;
  const table = first.keys.files?.keyTableFile;
  if (!table) {
    process.stderr.write(`postseal: ${first.file} has no key table (dkimSign.keyTableFile), so there is no key to activate\n`);
    return 1;
  }
  let unlock: () => void;
  try {
    unlock = lockKeyTable(table);
  } catch (err) {
    if (!isPostsealError(err)) throw err;
    process.stderr.write(`postseal: not activated: ${err.code}\n${err.message}\n`);
    return 1;
  }
  try {
    // Read again under the lock: the plan must start from the table as the last activation left it.
    const config = loadOrExplain(first.file);
    return config ? await activate(config, values.domain, values.selector) : 1;
  } finally {
    unlock();
  }
}

async function activate(config: LoadedConfig, domainArg: string, selectorArg: string): Promise<number> {
  const domain = normalizeDomain(domainArg);
  const selector = selectorArg.toLowerCase();
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
