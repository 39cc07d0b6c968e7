#!/usr/bin/env node
/**
 * The `postseal` command: dispatches to a subcommand module. Exit codes: 0 success,
 * 1 failure (config invalid, check failed), 2 usage error; `quarantine`, for scripts,
 * tells "not found" (1) from a failure (3).
 */
import path from 'node:path';

/**
 * Each command's module is loaded when it runs: the message path (stages, mailauth) is half of
 * a process's memory, and a cluster's primary, which only supervises, never needs it.
 */
const commands: Record<string, { summary: string; run: (args: string[]) => Promise<number> }> = {
  start: {
    summary: 'start [--config FILE]            run the filter in the foreground (logs JSON to stdout)',
    run: (a) => (require('./start-command') as typeof import('./start-command')).runStart(a),
  },
  keys: {
    summary: 'keys generate|show|test|activate|import  DKIM keys: make, publish, check against DNS, rotate, import',
    run: (a) => (require('./keys-command') as typeof import('./keys-command')).runKeys(a),
  },
  config: {
    summary:
      'config check|print BANK|docs [--config FILE] [--dns] [--probe]  validate the configuration (--dns: and the keys in DNS; --probe: forward targets answer), print a bank, or the reference',
    run: (a) => (require('./config-command') as typeof import('./config-command')).runConfig(a),
  },
  dmarc: {
    summary: 'dmarc report [--since DAY] [--dry-run --out DIR] | stats DOMAIN  DMARC aggregate reports: send now, preview, or summarise stored results',
    run: (a) => (require('./dmarc-command') as typeof import('./dmarc-command')).runDmarc(a),
  },
  quarantine: {
    summary: 'quarantine list|show ID|release ID|delete ID [--json]  held messages: list, look at, send on, remove (exit 3 on failure, 1 not found)',
    run: (a) => (require('./quarantine-command') as typeof import('./quarantine-command')).runQuarantine(a),
  },
  explain: {
    summary: 'explain [--bank NAME] FILE|-        which signing rule and keys would sign a message, or why not',
    run: (a) => (require('./explain-command') as typeof import('./explain-command')).runExplain(a),
  },
  srs: {
    summary: 'srs forward|reverse ADDRESS [--config FILE]  what the SRS maps (services.srs) make of an address',
    run: (a) => (require('./srs-command') as typeof import('./srs-command')).runSrs(a),
  },
  verify: {
    summary: 'verify [--dns HOST:PORT] [--client-ip IP --helo NAME --mail-from ADDR] FILE|-  DKIM/SPF/DMARC/ARC of one message',
    run: (a) => (require('./verify-command') as typeof import('./verify-command')).runVerify(a),
  },
};

export const usage = `Usage: postseal <command> [options]

Commands:
${Object.values(commands)
  .map((c) => `  ${c.summary}`)
  .join('\n')}

The configuration file: --config FILE, else $POSTSEAL_CONFIG, else /etc/postseal/postseal.yaml,
else the embedded example (listeners 10024/10026/10028, reinjection to 10025/10027; a notice on
stderr says so). "postseal <command> --help" shows a command's options.`;

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
  if (!nodeSupported()) return 1;
  return cmd.run(rest);
}

/**
 * `node dist/cli/main.js` with Debian's Node 20 first on PATH loads and even passes `config
 * check`, then fails at start on node:sqlite with advice about the store's folder: said here first.
 */
function nodeSupported(): boolean {
  const major = Number(process.versions.node.split('.')[0]);
  if (major >= MIN_NODE_MAJOR) return true;
  const launcher = path.resolve(__dirname, '../../bin/postseal');
  process.stderr.write(
    `postseal: cannot start: NODE_UNSUPPORTED\n${process.execPath} is Node.js ${process.versions.node}; postseal needs Node.js ${MIN_NODE_MAJOR} or newer: run ${launcher} (the installed postseal command), which uses the Node ${MIN_NODE_MAJOR} that npm install brought, or npm start\n`,
  );
  return false;
}

const MIN_NODE_MAJOR = 24;

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== -1) process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`postseal: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
