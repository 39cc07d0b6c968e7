/**
 * postseal as the benchmark runs it: the built command (dist/cli/main.js) as a child process,
 * one listener per path, every bank forwarding to the benchmark's smtp-sink, the log on a
 * file (one JSON line per message, as in production). Each path runs a shipped bank
 * (policy-banks/) with only the downstream changed, minus any stage the build does not
 * know yet (dist/config/bank-schema.js), which is reported as missing: the same bench
 * lights new stages up as they land.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stopChild } from './postfix-tools';
import { freePort, waitForGreeting, waitForListener } from './proc';
import YAML from 'yaml';
import { DUAL_DOMAIN, ENVELOPE, OWN_DOMAIN, type BenchKeys, type MessageKind } from './messages';

export const ROOT = path.resolve(__dirname, '../..');
export const NODE = path.join(ROOT, 'node_modules/.bin/node');
const CLI = path.join(ROOT, 'dist/cli/main.js');

export type PathName = 'inbound' | 'originating' | 'originating-dual' | 'nochecks' | 'content';

export interface PathSpec {
  readonly name: PathName;
  readonly bank: string;
  /** The shipped bank (policy-banks/) this path runs as; null: the pass-through case. */
  readonly shipped: string | null;
  readonly kind: MessageKind;
  readonly from: string;
  /** Content stages added to the shipped bank's, before authentication-results. */
  readonly content?: readonly string[];
}

/**
 * The four paths. NOCHECKS as shipped signs (list fan-out); the "nochecks"
 * figure is the proxy alone, so that path runs no stage at all.
 */
export const PATHS: readonly PathSpec[] = [
  { name: 'inbound', bank: 'default', shipped: 'default', kind: 'signed', from: ENVELOPE.inbound },
  { name: 'originating', bank: 'ORIGINATING', shipped: 'ORIGINATING', kind: 'plain', from: ENVELOPE.originating },
  { name: 'originating-dual', bank: 'ORIGINATING_DUAL', shipped: 'ORIGINATING', kind: 'dual', from: ENVELOPE.dual },
  { name: 'nochecks', bank: 'NOCHECKS', shipped: null, kind: 'plain', from: ENVELOPE.originating },
  // The inbound path plus amavisd-new's content checks, against the bench's clamd and spamd
  // (bench/scanners.ts): its CPU minus the inbound path's is what the checks add.
  { name: 'content', bank: 'CONTENT', shipped: 'default', kind: 'signed', from: ENVELOPE.inbound, content: ['banned', 'virus', 'spam', 'spam-tag'] },
];

/** Where the content path's scanners listen (bench/scanners.ts). */
export interface ScannerAddresses {
  clamdSocket: string;
  spamdHost: string;
  spamdPort: number;
}

type SchemaModule<K extends string> = Record<K, { properties: Record<string, { items?: { enum?: readonly string[] } }> }>;

/** Stage ids and main-config sections the built postseal knows. */
function builtSchema(): { stages: Set<string>; mainKeys: Set<string> } {
  const bank = require(path.join(ROOT, 'dist/stages/registry.js')) as SchemaModule<'bankSchema'>;
  const main = require(path.join(ROOT, 'dist/config/main-schema.js')) as SchemaModule<'mainConfigSchema'>;
  return { stages: new Set(bank.bankSchema.properties.stages.items?.enum ?? []), mainKeys: new Set(Object.keys(main.mainConfigSchema.properties)) };
}

export interface BenchBanks {
  /** What each path runs, and the shipped stages this build does not have yet. */
  stages: Record<PathName, { runs: string[]; missing: string[] }>;
}

function readBank(name: string): Record<string, unknown> {
  return (YAML.parse(readFileSync(path.join(ROOT, 'policy-banks', `${name}.yaml`), 'utf8')) ?? {}) as Record<string, unknown>;
}

/** The shipped bank with the benchmark's downstream, and only the stages the build has. */
function benchBank(spec: PathSpec, have: Set<string>, sinkPort: number, scanners?: ScannerAddresses): { yaml: string; runs: string[]; missing: string[] } {
  const base = spec.shipped ? readBank(spec.shipped) : { description: 'benchmark pass-through: no stages', stages: [], loopGuard: { traceHeader: false } };
  const wanted = [...((base.stages ?? readBank('default').stages ?? []) as string[])];
  const extra: Record<string, unknown> = {};
  if (spec.content) {
    if (!scanners) throw new Error(`the ${spec.name} path needs the bench's clamd and spamd`);
    const at = wanted.includes('authentication-results') ? wanted.indexOf('authentication-results') : wanted.length;
    wanted.splice(at, 0, ...spec.content);
    extra.virus = { socket: scanners.clamdSocket };
    // Every scanned message gets its X-Spam-* fields (amavisd: $sa_tag_level_deflt -999),
    // so the checks can see the scan and both filters write the same fields.
    extra.spam = { spamd: { enabled: true, host: scanners.spamdHost, port: scanners.spamdPort }, tagLevel: -999 };
  }
  const runs = wanted.filter((s) => have.has(s));
  const target = { host: '127.0.0.1', port: sinkPort };
  const bank = { ...base, ...extra, forward: { ...(base.forward as object), ...target }, notify: target, stages: runs };
  return { yaml: `# bench path ${spec.name}, from policy-banks/${spec.shipped ?? '(none)'}.yaml\n${YAML.stringify(bank)}`, runs, missing: wanted.filter((s) => !have.has(s)) };
}

/** Key and signing tables: RSA for OWN_DOMAIN, RSA + Ed25519 for DUAL_DOMAIN. */
function writeKeyTables(dir: string, keys: BenchKeys): { keyTableFile: string; signingTableFile: string } {
  const keyTableFile = path.join(dir, 'key-table.yaml');
  const signingTableFile = path.join(dir, 'signing-table.yaml');
  const rsa = { selector: keys.rsaSelector, keyFile: keys.rsaFile, algorithm: 'rsa-sha256' };
  writeFileSync(
    keyTableFile,
    YAML.stringify({
      'own-rsa': { domain: OWN_DOMAIN, ...rsa },
      'dual-rsa': { domain: DUAL_DOMAIN, ...rsa },
      'dual-ed': { domain: DUAL_DOMAIN, selector: keys.ed25519Selector, keyFile: keys.ed25519File, algorithm: 'ed25519-sha256' },
    }),
  );
  writeFileSync(
    signingTableFile,
    YAML.stringify([
      { author: OWN_DOMAIN, keys: ['own-rsa'] },
      { author: DUAL_DOMAIN, keys: ['dual-rsa', 'dual-ed'] },
    ]),
  );
  return { keyTableFile, signingTableFile };
}

export interface Postseal {
  readonly pid: number;
  readonly ports: Record<PathName, number>;
  readonly banks: BenchBanks;
  readonly logFile: string;
  /**
   * The event-loop delay since the previous call (p99 and max, ms, the worst worker's), from
   * postseal's metrics service; null when the build has no such metric.
   */
  loopDelay(): Promise<{ p99: number; max: number } | null>;
  stop(): Promise<void>;
}

export interface PostsealStart {
  dir: string;
  keys: BenchKeys;
  sinkPort: number;
  dnsPort: number;
  workers: number;
  /** Extra node options, e.g. --cpu-prof. */
  nodeArgs?: string[];
  /** Only these paths get a listener. */
  paths?: readonly PathName[];
  memoryThresholdBytes?: number;
  /** Needed by the content path. */
  scanners?: ScannerAddresses;
  /** Serve postseal's metrics (for loopDelay()): the proxy bench does, the whole-MTA bench not. */
  metrics?: boolean;
  /** The listeners' protocol when not SMTP (the whole-MTA bench's milter hook, bench/mta/setups.ts). */
  listenerProtocol?: string;
  /** Another checkout whose built postseal runs (its node and dist/), for A/B runs; default this one. */
  root?: string;
}

export async function startPostseal(opts: PostsealStart): Promise<Postseal> {
  const built = builtSchema();
  const specs = PATHS.filter((p) => !opts.paths || opts.paths.includes(p.name));
  const bankDir = path.join(opts.dir, 'banks');
  mkdirSync(bankDir, { recursive: true });
  const stages = {} as BenchBanks['stages'];
  const ports = {} as Record<PathName, number>;
  const listeners: string[] = [];
  if (!specs.some((s) => s.bank === 'default')) writeFileSync(path.join(bankDir, 'default.yaml'), benchBank(PATHS[0], built.stages, opts.sinkPort).yaml);
  for (const spec of specs) {
    const bank = benchBank(spec, built.stages, opts.sinkPort, opts.scanners);
    stages[spec.name] = { runs: bank.runs, missing: bank.missing };
    ports[spec.name] = await freePort();
    const protocol = opts.listenerProtocol ? `, protocol: ${opts.listenerProtocol}` : '';
    listeners.push(`  - { address: 127.0.0.1, port: ${ports[spec.name]}, bank: ${spec.bank}${protocol} }`);
    writeFileSync(path.join(bankDir, `${spec.bank}.yaml`), bank.yaml);
  }
  const main = [
    'hostname: filter.bench.example',
    'bankDir: banks',
    'listeners:',
    ...listeners,
    `spool: { dir: ${JSON.stringify(opts.dir)}, memoryThresholdBytes: ${opts.memoryThresholdBytes ?? 1048576} }`,
    'log: { level: info }',
  ];
  // The metrics service for the event-loop delay gauges (bench/README.md, "Tail latency").
  const metricsPort = opts.metrics && built.mainKeys.has('services') ? await freePort() : null;
  if (metricsPort) main.push(`services: { metrics: { enabled: true, address: 127.0.0.1, port: ${metricsPort} } }`);
  if (built.mainKeys.has('dns')) main.push(`dns: { servers: ["127.0.0.1:${opts.dnsPort}"] }`);
  if (built.mainKeys.has('dkimSign')) main.push(`dkimSign: ${JSON.stringify(writeKeyTables(opts.dir, opts.keys))}`);
  const configFile = path.join(opts.dir, 'postseal.yaml');
  writeFileSync(configFile, `${main.join('\n')}\n`);
  const logFile = path.join(opts.dir, `postseal-${Date.now()}.log`);
  const out = openSync(logFile, 'a');
  const [node, cli] = opts.root ? [path.join(opts.root, 'node_modules/.bin/node'), path.join(opts.root, 'dist/cli/main.js')] : [NODE, CLI];
  const child: ChildProcess = spawn(node, [...(opts.nodeArgs ?? []), cli, 'start', '--config', configFile, '--workers', String(opts.workers)], {
    stdio: ['ignore', out, out],
    cwd: opts.dir,
  });
  closeSync(out);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await waitForLine(logFile, '"msg":"postseal started"', 60000, exited);
    // A milter listener waits for its client to speak first: no greeting to wait for.
    for (const port of Object.values(ports)) await (opts.listenerProtocol === 'milter' ? waitForListener(port, 10000) : waitForGreeting(port, 10000));
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`postseal did not start (log: ${logFile}): ${(err as Error).message}`);
  }
  const loopDelay = async () => (metricsPort ? readLoopDelay(metricsPort) : null);
  return { pid: child.pid!, ports, banks: { stages }, logFile, loopDelay, stop: () => stopChild(child, exited, 'SIGTERM', 30000) };
}

/** postseal_event_loop_delay_{p99,max}_seconds from its /metrics, in ms; null if it has none. */
async function readLoopDelay(port: number): Promise<{ p99: number; max: number } | null> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const gauge = (q: string) => {
    const m = new RegExp(`^postseal_event_loop_delay_${q}_seconds(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
    return m ? Math.round(Number(m[1]) * 10000) / 10 : null;
  };
  const p99 = gauge('p99');
  const max = gauge('max');
  return p99 === null || max === null ? null : { p99, max };
}

/** Waits for postseal's start line, which a cluster writes once every worker listens. */
async function waitForLine(file: string, needle: string, timeoutMs: number, exited: Promise<void>): Promise<void> {
  let gone = false;
  void exited.then(() => (gone = true));
  const deadline = Date.now() + timeoutMs;
  while (!readFileSync(file, 'utf8').includes(needle)) {
    if (gone) throw new Error(`postseal exited: ${readFileSync(file, 'utf8').slice(-1000)}`);
    if (Date.now() > deadline) throw new Error(`no "postseal started" within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
