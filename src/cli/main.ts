#!/usr/bin/env node
/**
 * The `postseal` command: dispatches to a subcommand module. Exit codes: 0 success,
 * 1 failure (config invalid, check failed), 2 usage error.
 */
import { runConfig } from './config-command';
import { runExplain } from './explain-command';
import { runKeys } from './keys-command';
import { runStart } from './start-command';
import { runVerify } from './verify-command';

const commands: Record<string, { summary: string; run: (args: string[]) => Promise<number> }> = {
  start: { summary: 'start [--config FILE]            run the filter in the foreground (logs JSON to stdout)', run: runStart },
  keys: { summary: 'keys generate|show|test|activate|import  DKIM keys: make, publish, check against DNS, rotate, import', run: runKeys },
  config: { summary: 'config check|print BANK|docs [--config FILE] [--dns]  validate the configuration (--dns: and the keys in DNS), print a bank, or the reference', run: runConfig },
  explain: { summary: 'explain [--bank NAME] FILE|-        which signing rule and keys would sign a message, or why not', run: runExplain },
  verify: { summary: 'verify [--dns HOST:PORT] [--client-ip IP --helo NAME --mail-from ADDR] FILE|-  DKIM/SPF/DMARC/ARC of one message', run: runVerify },
};

export const usage = `Usage: postseal <command> [options]

Commands:
${Object.values(commands)
  .map((c) => `  ${c.summary}`)
  .join('\n')}

Without --config, postseal uses its embedded default config (listeners 10024/10026/10028,
reinjection to 10025/10027). "postseal <command> --help" shows a command's options.`;

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${usage}\n`);
    return name ? 0 : 2;
  }
  const cmd = commands[name];
  if (!cmd) {
    process.stderr.write(`postseal: unknown command "${name}"\n\n${usage}\n`);
    return 2;
  }
  return cmd.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== -1) process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`postseal: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
