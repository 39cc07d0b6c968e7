/**
 * postseal as a postmaster runs it: `node cli/main.js start --config FILE` in a child process,
 * so a test can SIGKILL it mid-DATA. It is compiled from the current src/ into a private
 * folder (never the shared dist/), and its config is generated from the shipped postseal.yaml
 * and policy-banks/ with the ports remapped the same way as examples/postfix.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import YAML from 'yaml';
import type { ExamplePort, PortMap } from './postfix';
import { waitFor } from './wait';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '../..');
export const FILTER_HOSTNAME = 'filter.postseal.test';

export type LogLine = Record<string, unknown>;

/**
 * Compiles src/ with tsconfig.build.json into `outDir`; returns the CLI entry point. Without
 * type-checking (--noCheck), like ts-jest's isolatedModules for the other suites: type errors
 * are `tsc --noEmit`'s job, this suite tests behaviour.
 */
export async function buildPostseal(outDir: string): Promise<string> {
  try {
    await run(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--noCheck', '--outDir', outDir], { cwd: ROOT });
  } catch (err) {
    const { stdout, stderr } = err as { stdout?: string; stderr?: string };
    throw new Error(`building postseal for the e2e suite failed:\n${stdout ?? ''}${stderr ?? ''}`, { cause: err });
  }
  // As in the package: the shipped notice templates beside dist/ (lib/notice-templates.ts finds them there).
  cpSync(path.join(ROOT, 'templates'), path.join(outDir, '..', 'templates'), { recursive: true });
  return path.join(outDir, 'cli/main.js');
}

/**
 * Writes postseal.yaml and banks/ into `dir`. The spool keeps nothing in memory
 * (memoryThresholdBytes 0), so every message has a spool file from its first byte: the
 * signal that a message is in DATA, which the SIGKILL scenario waits for. DNS goes to the
 * test's own server (`dnsServer`, "127.0.0.1:PORT"), so SPF/DMARC/DKIM lookups neither leave
 * the machine nor depend on a resolver being there.
 */
/** `extra`: main-config keys set on top of the shipped postseal.yaml (e.g. dkimSign with test keys). */
/** `banks`: bank files to add, or to lay over a shipped one (top-level keys replace, `forward` merges). */
export function writePostsealConfig(
  dir: string,
  ports: PortMap,
  dnsServer: string,
  extra: Record<string, unknown> = {},
  banks: Record<string, Record<string, unknown>> = {},
): { configFile: string; spoolDir: string } {
  const bankDir = path.join(dir, 'banks');
  const spoolDir = path.join(dir, 'spool');
  mkdirSync(bankDir, { recursive: true });
  mkdirSync(spoolDir);
  const shippedBanks = path.join(ROOT, 'policy-banks');
  for (const f of readdirSync(shippedBanks).filter((n) => n.endsWith('.yaml'))) {
    writeFileSync(path.join(bankDir, f), YAML.stringify(remapPorts(YAML.parse(readFileSync(path.join(shippedBanks, f), 'utf8')) ?? {}, ports)));
  }
  for (const [name, overlay] of Object.entries(banks)) {
    const file = path.join(bankDir, `${name}.yaml`);
    const shippedBank = (existsSync(file) ? YAML.parse(readFileSync(file, 'utf8')) : null) ?? {};
    const o = remapPorts(overlay, ports) as Record<string, unknown>;
    writeFileSync(file, YAML.stringify({ ...shippedBank, ...o, ...(o.forward ? { forward: { ...shippedBank.forward, ...(o.forward as object) } } : {}) }));
  }
  const shipped = remapPorts(YAML.parse(readFileSync(path.join(ROOT, 'postseal.yaml'), 'utf8')), ports) as Record<string, unknown>;
  const main = {
    ...shipped,
    hostname: FILTER_HOSTNAME,
    bankDir: 'banks',
    spool: { dir: spoolDir, memoryThresholdBytes: 0 },
    dns: { ...(shipped.dns as object), servers: [dnsServer] },
    // Remapped too: a test's extra settings name example ports (the SRS service's) like the examples.
    ...(remapPorts(extra, ports) as Record<string, unknown>),
  };
  const configFile = path.join(dir, 'postseal.yaml');
  writeFileSync(configFile, YAML.stringify(main));
  return { configFile, spoolDir };
}

/** Every `port:` (or `...Port:`) value in a config tree, mapped like the examples; unknown ports are an error. */
function remapPorts(value: unknown, ports: PortMap): unknown {
  if (Array.isArray(value)) return value.map((v) => remapPorts(v, ports));
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(
    Object.entries(value).map(([k, v]) => {
      // "port", and the SRS service's socketmapPort / tcpForwardPort / tcpReversePort.
      if (k !== 'port' && !k.endsWith('Port')) return [k, remapPorts(v, ports)];
      const mapped = ports[v as ExamplePort];
      if (mapped === undefined) throw new Error(`postseal config uses port ${String(v)}, which the e2e port map does not know`);
      return [k, mapped];
    }),
  );
}

export class PostsealDaemon {
  readonly logs: LogLine[] = [];
  private stderr = '';
  private readonly exited: Promise<void>;

  private constructor(private readonly child: ChildProcess) {
    let partial = '';
    child.stdout!.on('data', (d: Buffer) => {
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop()!;
      for (const line of lines.filter(Boolean)) this.logs.push(parseLine(line));
    });
    child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
  }

  /** Starts the daemon and resolves once it logged "postseal started"; `pidFile` lets a later run reap it. */
  static async start(cli: string, configFile: string, pidFile: string): Promise<PostsealDaemon> {
    const child = spawn(process.execPath, [cli, 'start', '--config', configFile], {
      // The compiled files live outside the checkout; their imports resolve through NODE_PATH.
      env: { ...process.env, NODE_PATH: path.join(ROOT, 'node_modules') },
      stdio: ['ignore', 'pipe', 'pipe'],
      // A process group of its own: with several workers (Node cluster) "postseal" is the
      // primary and its workers, and kill() must take them all, as the OOM killer or
      // `systemctl kill -s KILL` would.
      detached: true,
    });
    const daemon = new PostsealDaemon(child);
    writeFileSync(pidFile, String(child.pid));
    try {
      await waitFor('postseal to start', () => daemon.logs.some((l) => l.msg === 'postseal started') || !daemon.running, { explain: () => daemon.explain() });
    } catch (err) {
      await daemon.kill();
      throw err;
    }
    if (!daemon.running) throw new Error(`postseal exited at start-up\n${daemon.explain()}`);
    return daemon;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /**
   * The one log line per message (STYLE.md §12) for Postfix's `queueId`, once it is written:
   * postseal writes its log in blocks (src/lib/log.ts), so the line can come after the reply.
   */
  message(queueId: string): Promise<LogLine> {
    return waitFor(`postseal's log line for ${queueId}`, () => this.logs.find((l) => l.msg === 'message' && l.queueId === queueId), {
      timeoutMs: 5000,
      explain: () => this.explain(),
    });
  }

  /** SIGKILL to every postseal process: no drain, no clean-up, as after a crash. */
  async kill(): Promise<void> {
    this.killGroup();
    await this.exited;
  }

  /** SIGTERM to postseal (it drains, workers included), SIGKILL to all of them after 10 s. */
  async stop(): Promise<void> {
    if (this.running) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.killGroup(), 10000);
      await this.exited;
      clearTimeout(timer);
    }
    this.killGroup();
  }

  private killGroup(): void {
    try {
      process.kill(-this.child.pid!, 'SIGKILL');
    } catch {
      // ESRCH: the whole group is gone already.
    }
  }

  explain(): string {
    return `--- postseal log ---\n${this.logs.map((l) => JSON.stringify(l)).join('\n')}\n--- postseal stderr ---\n${this.stderr}`;
  }
}

function parseLine(line: string): LogLine {
  try {
    return JSON.parse(line) as LogLine;
  } catch {
    return { msg: 'unparsed', line };
  }
}
