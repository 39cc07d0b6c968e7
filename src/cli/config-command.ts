/**
 * `postseal config check` validates the main config, every bank and the signing files, and
 * runs the start-up checks of config/preflight.ts (spool folder, forward loops), printing
 * their warnings (exit 0/1); with --dns it also runs `postseal keys test` on every key.
 * `postseal config print BANK` prints the effective, merged bank and its stage order; with
 * --client-ip or --mail-from, the bank chain (cli/bank-chain.ts) from BANK's listener and
 * then the bank it ends on.
 */
import YAML from 'yaml';
import { configReference } from '../config/docs';
import type { LoadedConfig } from '../setup';
import { checkPolicyConfig } from '../services/policy';
import { checkConfig } from '../setup';
import { isPostsealError, type ConfigWarning } from '../errors';
import { DkimKeyCache } from '../lib/dkim/public-keys';
import { createDnsResolver } from '../lib/dns';
import { createLogger, type Logger } from '../lib/log';
import { createPipeline } from '../pipeline/runner';
import { buildStageDeps } from '../setup';
import { bankSchema, stageRegistry } from '../stages/registry';
import { dmarcResultsNotKept } from '../store/dmarc-results';
import { loadOrExplain, parse, UsageError, withUsage } from './args';
import { bankChain } from './bank-chain';
import { probeForwardTargets } from './config-probe';
import { runKeyTests } from './keys/common';

const help = `Usage: postseal config check [--dns] [--probe] [--config FILE]
       postseal config print BANK [--client-ip IP] [--mail-from ADDR] [--config FILE]
       postseal config docs

check   validates the main configuration, every policy bank, the key table and the signing
        table (every key file is read), the spool folder (created, mode 700, if missing) and
        that no bank forwards to postseal's own listeners; warnings (key files readable by
        others, listeners other hosts can reach) go to standard error; exit 0 when valid, 1 if
        not. --dns also checks every key against its DNS record, as postseal keys test does;
        --probe connects to every forward target and warns when it does not greet (220)
print   the effective bank (default.yaml with the bank's overlay, defaults filled in) and
        the order its stages run in; with --client-ip and/or --mail-from, BANK is the
        listener's bank: the chain port -> client network -> sender (bankRules) is printed,
        then the bank it ends on (--mail-from "" is the null sender <>)
docs    the configuration reference (docs/config.md) in Markdown, from the JSON Schemas`;

export function runConfig(args: string[]): Promise<number> {
  return withUsage(async () => {
    const {
      values,
      positionals,
      help: h,
    } = parse(
      args,
      {
        config: { type: 'string', short: 'c' },
        dns: { type: 'boolean', default: false },
        probe: { type: 'boolean', default: false },
        'client-ip': { type: 'string' },
        'mail-from': { type: 'string' },
      },
      help,
    );
    if (h) {
      process.stdout.write(`${h}\n`);
      return 0;
    }
    const [action, bankName] = positionals;
    if (action === 'docs') {
      process.stdout.write(configReference(bankSchema));
      return 0;
    }
    if (action !== 'check' && action !== 'print') throw new UsageError(`config needs "check", "print" or "docs"\n\n${help}`);
    const config = loadOrExplain(values.config);
    if (!config) return 1;
    const log = createLogger('silent');
    if (action === 'check') {
      for (const name of config.banks.keys()) pipelineOf(config, name, log);
      let warnings: ConfigWarning[];
      try {
        warnings = await checkConfig(config);
        checkPolicyConfig(config);
      } catch (err) {
        if (!isPostsealError(err)) throw err;
        process.stderr.write(`postseal: configuration error ${err.code}\n${err.message}\n`);
        return 1;
      }
      if (values.probe) warnings.push(...(await probeForwardTargets(config)));
      for (const w of warnings) process.stderr.write(`postseal: warning ${w.code}\n${w.message}\n`);
      process.stdout.write(`${config.file}: valid (${config.main.listeners.length} listeners, banks: ${[...config.banks.keys()].join(', ')}${keySummary(config)})\n`);
      if (!values.dns || config.keys.size === 0) return 0;
      return (await runKeyTests(config, config.keys.keys)) ? 0 : 1;
    }
    if (!bankName) throw new UsageError(`config print needs a bank name\n\n${help}`);
    let chain = '';
    if (values['client-ip'] !== undefined || values['mail-from'] !== undefined) {
      if (!config.banks.has(bankName)) {
        process.stderr.write(`postseal: no bank "${bankName}"; banks: ${[...config.banks.keys()].join(', ')}\n`);
        return 1;
      }
      const c = bankChain(config, bankName, values['client-ip'], values['mail-from'] ?? '');
      chain = `# ${c.text}\n`;
      return printBank(config, c.choice.bank, log, chain);
    }
    return printBank(config, bankName, log, chain);
  });
}

function printBank(config: LoadedConfig, bankName: string, log: Logger, chain: string): number {
  {
    const bank = config.banks.get(bankName);
    if (!bank) {
      process.stderr.write(`postseal: no bank "${bankName}"; banks: ${[...config.banks.keys()].join(', ')}\n`);
      return 1;
    }
    const pipeline = pipelineOf(config, bankName, log);
    process.stdout.write(`${chain}# bank ${bankName} (stage order: ${pipeline.stageIds.join(' -> ') || 'none'})\n${YAML.stringify(bank)}`);
    return 0;
  }
}

function keySummary(config: LoadedConfig): string {
  if (config.keys.size === 0) return '';
  const states = ['active', 'staged', 'retiring'].map((s) => [s, config.keys.keys.filter((k) => k.state === s).length] as const).filter(([, n]) => n > 0);
  return `; signing keys: ${states.map(([s, n]) => `${n} ${s}`).join(', ')}`;
}

/** Building the pipeline runs every stage factory, which is where stage settings are checked. */
function pipelineOf(config: LoadedConfig, bankName: string, log: Logger) {
  const deps = buildStageDeps(config, { resolver: createDnsResolver(config.main.dns), dmarcStore: dmarcResultsNotKept }, bankName, log, new DkimKeyCache());
  return createPipeline(bankName, config.banks.get(bankName)!, stageRegistry, deps);
}
