/**
 * `npm run bench:mta`: the whole MTA as a postmaster feels it (issue 18, bench/README.md
 * "Whole MTA"). One private Postfix (bench/mta/postfix.ts), fed by smtp-source on its MX port,
 * delivering to smtp-sink; set-ups one after another (bench/mta/setups.ts), the same messages
 * and RSA-2048 key for all. Per set-up: one message of each size through a dumping sink,
 * verified by Mail::DKIM (bench/mta/verify.ts), then per size and reuse setting `--runs` timed
 * runs: messages/s at the sink and CPU per message of Postfix's processes and the filter's.
 *   --smoke             Postfix alone and postseal's content filter, 2 KB, reused, one short run
 *   --setups LIST       set-ups to run (default all: postfix, rspamd-milter, opendkim-milter,
 *                       amavisd, postseal-filter, postseal-milter)
 *   --sizes LIST        KB (default 2,20); --reuse yes|no|both; --runs N (default 2)
 *   --seconds S         length of each timed run (default 3); --sessions N (default 16)
 *   --processes N       postseal workers and rspamd proxy processes (default one per core)
 *   --amavisd-servers N amavisd-new's $max_servers (default 8)
 *   --profile           postseal's processes under node --cpu-prof, summarised per set-up
 *                       (bench/mta/profile.ts): where a message's CPU goes at Postfix's pace
 *   --node-args=ARGS    extra node/V8 options for postseal's processes (A/B runs of V8 settings)
 *   --pace R            instead of flat-out runs, `--runs` runs per size and reuse setting at a
 *                       fixed R msg/s: CPU per message and latency of every set-up at one pace
 *   --out FILE, --keep (leave the work folder: configs, logs, maillog)
 * Exit status 0; 1 when a set-up failed its check or start-up; 2 when Postfix or root is missing.
 */
import { createPrivateKey, sign } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { readDump } from '../checks';
import { startDnsServer } from '../dns-server';
import { ENVELOPE, makeKeys, makeMessage, type BenchKeys, type BenchMessage } from '../messages';
import { findTool, runSmtpSource } from '../postfix-tools';
import { ROOT } from '../postseal';
import { freePort } from '../proc';
import { debianVersion, describeMachine, describeVersions } from '../versions';
import { BenchPostfix, type MtaPorts } from './postfix';
import { summarizeMtaProfiles } from './profile';
import { measureCells, measurePaced, type CellsRequest, type Load } from './timing';
import { mtaMarkdown, mtaTargets, type MtaResults, type PacedFigure, type SetupResult } from './report';
import { SETUPS, type RunningFilter, type Setup, type SetupContext } from './setups';
import { startCountingSink, type CountingSink } from './sink';
import { signatureProblem, verifyWithMailDkim } from './verify';

const { values: opt } = parseArgs({
  options: {
    smoke: { type: 'boolean', default: false },
    setups: { type: 'string' },
    sizes: { type: 'string' },
    reuse: { type: 'string', default: 'both' },
    runs: { type: 'string' },
    seconds: { type: 'string' },
    sessions: { type: 'string' },
    processes: { type: 'string' },
    'amavisd-servers': { type: 'string' },
    out: { type: 'string' },
    keep: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    'node-args': { type: 'string' },
    pace: { type: 'string' },
  },
});

const log = (line: string) => process.stderr.write(`bench:mta: ${line}\n`);
const list = (v: string | undefined, fallback: number[]) => (v ? v.split(',').map(Number) : fallback);
/** Postfix's smtp client keeps an idle cached connection to the sink this long (smtp_connection_cache_time_limit). */
const SINK_CACHE_MS = 2500;

async function main(): Promise<number> {
  const smtpSource = findTool('smtp-source');
  const smtpSink = findTool('smtp-sink');
  if (!smtpSource || !smtpSink || !findTool('postfix')) {
    log('Postfix, its smtp-source and smtp-sink are needed (Debian package postfix)');
    return 2;
  }
  if (process.getuid?.() !== 0) {
    log("Postfix's master must start as root (it drops to its mail_owner)");
    return 2;
  }
  const started = Date.now();
  const machine = describeMachine();
  const partial = !!(
    opt.setups ||
    opt.sizes ||
    opt.reuse !== 'both' ||
    opt.runs ||
    opt.seconds ||
    opt.sessions ||
    opt.processes ||
    opt['amavisd-servers'] ||
    opt['node-args'] ||
    opt.pace
  );
  const mode: MtaResults['mode'] = opt.smoke ? 'smoke' : partial ? 'partial' : 'full';
  const names = opt.setups?.split(',') ?? (opt.smoke ? ['postfix', 'postseal-filter'] : SETUPS.map((s) => s.name));
  const unknown = names.filter((n) => !SETUPS.some((s) => s.name === n));
  if (unknown.length) throw new Error(`unknown set-up(s) ${unknown.join(', ')}; known: ${SETUPS.map((s) => s.name).join(', ')}`);
  const setups = SETUPS.filter((s) => names.includes(s.name));
  const sizes = opt.smoke ? [2] : list(opt.sizes, [2, 20]);
  const reuses = opt.smoke ? [true] : opt.reuse === 'both' ? [false, true] : [opt.reuse === 'yes'];
  const runs = opt.smoke ? 1 : Number(opt.runs ?? 2);
  const sessions = Number(opt.sessions ?? 16);
  const seconds = Number(opt.seconds ?? 3);
  const processes = Number(opt.processes ?? os.availableParallelism());
  const amavisdMaxServers = Number(opt['amavisd-servers'] ?? 8);
  const pace = opt.pace === undefined ? null : Number(opt.pace);
  if (pace !== null && !(pace > 0)) throw new Error(`--pace wants messages per second above 0, not ${opt.pace}`);

  const dir = mkdtempSync(path.join(os.tmpdir(), 'postseal-bench-mta-'));
  // mkdtemp makes it 0700: Postfix's, rspamd's, OpenDKIM's and amavisd-new's users must reach
  // their folders in it (the key files stay 0640 root).
  chmodSync(dir, 0o755);
  workDir = dir;
  const keys = makeKeys(dir);
  const signCpuMs = rsaSignCpuMs(keys);
  const dns = await startDnsServer(keys.dns);
  const messages = new Map<number, BenchMessage>();
  for (const sizeKb of sizes) messages.set(sizeKb, await makeMessage(dir, sizeKb, 'plain', keys));
  const sinkPort = await freePort();
  const fixed = { mx: 0, filterInbound: 0, filterOriginating: 0, reinjectInbound: 0, reinjectOriginating: 0, lists: 0, listsFilter: 0 } as MtaPorts;
  for (const k of Object.keys(fixed) as (keyof MtaPorts)[]) fixed[k] = await freePort();
  const postfix = new BenchPostfix(path.join(dir, 'postfix'), sinkPort);
  const profileDir = (name: string) => path.join(dir, `cpuprofile-${name}`);
  // Extra node/V8 options for postseal (--node-args=..., for A/B runs), and the profiler's.
  const extraArgs = opt['node-args']?.split(/\s+/).filter(Boolean) ?? [];
  const nodeArgs = (name: string) => [...extraArgs, ...(opt.profile ? ['--cpu-prof', '--cpu-prof-dir', profileDir(name)] : [])];
  const ctx: SetupContext = { dir, keys, dnsPort: dns.port, reinjectPort: fixed.reinjectOriginating, processes, amavisdMaxServers, nodeArgs };
  const profiles: string[] = [];
  const results: SetupResult[] = [];
  onSignal.add(() => postfix.stop());
  try {
    for (const setup of setups) {
      const skipped = setup.unavailable();
      const loadAvg = os.loadavg().map((l) => Math.round(l * 100) / 100);
      const result: SetupResult = { name: setup.name, label: setup.label, loadAvg, skipped, error: null, checks: [], cells: [] };
      results.push(result);
      if (skipped) {
        log(`${setup.name}: skipped: ${skipped}`);
        continue;
      }
      log(`${setup.name}: ${setup.label}`);
      try {
        const filter = await measureSetup(setup, result, {
          ctx,
          postfix,
          fixed,
          sinkPort,
          smtpSink,
          smtpSource,
          messages,
          load: { sessions, seconds, runs, reuses, smoke: opt.smoke },
          pace,
        });
        if (opt.profile && filter?.logFile) profiles.push(summarizeMtaProfiles(profileDir(setup.name), filter.pid, filter.logFile, setup.name));
      } catch (err) {
        result.error = (err as Error).message;
        log(`${setup.name}: FAILED: ${result.error}`);
      }
    }
  } finally {
    await postfix.stop();
    await dns.close();
    if (opt.keep) log(`work folder kept: ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }

  const base = {
    date: new Date(started).toISOString(),
    mode,
    durationSeconds: Math.round((Date.now() - started) / 1000),
    machine: { ...machine, loadAvgAtEnd: os.loadavg().map((l) => Math.round(l * 100) / 100) },
    versions: { ...describeVersions(), rspamd: debianVersion('rspamd'), opendkim: debianVersion('opendkim') },
    settings: {
      sessions,
      seconds,
      runs,
      pace,
      sizesKb: sizes,
      processes,
      amavisdMaxServers,
      messageBytes: Object.fromEntries([...messages].map(([k, m]) => [`${k}`, m.bytes.length])),
    },
    rsaSignCpuMs: signCpuMs,
    setups: results,
  };
  const all: MtaResults = { ...base, targets: mtaTargets(base) };
  const text = [mtaMarkdown(all), ...profiles].join('\n\n');
  process.stdout.write(text);
  const out = opt.out ?? (mode === 'full' ? path.join(ROOT, 'bench/results/mta-latest.json') : null);
  if (out) {
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify(all, null, 2)}\n`);
    writeFileSync(out.replace(/\.json$/, '.md'), text);
    log(`results written to ${out}`);
  }
  return results.some((r) => r.error) ? 1 : 0;
}

interface Env {
  ctx: SetupContext;
  postfix: BenchPostfix;
  fixed: MtaPorts;
  sinkPort: number;
  smtpSink: string;
  smtpSource: string;
  messages: ReadonlyMap<number, BenchMessage>;
  load: Omit<Load, 'port' | 'file'> & { reuses: boolean[] };
  /** --pace: paced runs instead of the flat-out cells. */
  pace: number | null;
}

/** Starts the set-up, checks its signatures, then times every cell; stops everything it started. */
async function measureSetup(setup: Setup, result: SetupResult, env: Env): Promise<RunningFilter | null> {
  // smtp-sink writes its dump as the user it drops to (nobody), so in a folder of nobody's.
  const dumpDir = path.join(env.ctx.dir, `dump-${setup.name}`);
  mkdirSync(dumpDir);
  const nobody = (id: string) => Number(execFileSync('id', [id, 'nobody']).toString());
  chownSync(dumpDir, nobody('-u'), nobody('-g'));
  const dump = path.join(dumpDir, 'messages');
  const sink: { current: CountingSink } = { current: await startCountingSink(env.smtpSink, env.sinkPort, dump) };
  const stopSink = () => sink.current.stop();
  onSignal.add(stopSink);
  const filter = await setup.start(env.ctx).catch(async (err) => {
    await sink.current.stop();
    throw err;
  });
  const stopFilter = async () => filter?.stop();
  onSignal.add(stopFilter);
  try {
    const ports: MtaPorts = { ...env.fixed, ...(setup.kind === 'content-filter' ? { filterOriginating: filter!.port } : {}) };
    await env.postfix.configure(ports, setup.postfix(filter?.port ?? null, env.ctx));
    await env.postfix.start(ports);
    try {
      result.checks = await checkSignatures(setup, env, ports, sink.current, dump);
      // Postfix's cached connections to the dumping sink close before it goes, then the
      // timed runs go to a sink that only counts.
      await new Promise((r) => setTimeout(r, SINK_CACHE_MS));
      await sink.current.stop();
      sink.current = await startCountingSink(env.smtpSink, env.sinkPort);
      const cells: CellsRequest = {
        postfix: env.postfix,
        sink: sink.current,
        smtpSource: env.smtpSource,
        filterPid: filter?.pid ?? null,
        sizes: [...env.messages.keys()],
        reuses: env.load.reuses,
        load: (sizeKb) => ({ ...env.load, port: ports.mx, file: env.messages.get(sizeKb)!.file }),
        log: (line) => log(`${setup.name}: ${line}`),
      };
      if (env.pace === null) result.cells = await measureCells(cells);
      else result.paced = await pacedRuns(cells, env, env.pace);
    } finally {
      await env.postfix.stop();
    }
  } finally {
    await filter?.stop();
    await sink.current.stop();
    onSignal.delete(stopFilter);
    onSignal.delete(stopSink);
  }
  return filter;
}

/** `--runs` paced runs per size and reuse setting (alternated), after a short one that warms the processes up (not kept). */
async function pacedRuns(cells: CellsRequest, env: Env, pace: number): Promise<PacedFigure[]> {
  const out: PacedFigure[] = [];
  for (const [sizeKb, message] of env.messages) {
    const load = cells.load(sizeKb);
    await measurePaced(cells, { ...load, seconds: Math.min(1, load.seconds) }, message.bytes, pace, sizeKb, true);
    for (let i = 0; i < env.load.runs; i++) {
      for (const reuse of env.load.reuses) {
        const run = await measurePaced(cells, load, message.bytes, pace, sizeKb, reuse);
        cells.log(
          `${sizeKb} KB ${reuse ? 'reused' : 'new connections'} at ${pace} msg/s: ${run.messages} messages, Postfix ${run.postfixCpuMs} ms/msg, filter ${run.filterCpuMs ?? '–'} ms/msg, p50/p99 ${run.p50Ms}/${run.p99Ms} ms`,
        );
        out.push(run);
      }
    }
  }
  return out;
}

/**
 * What to stop when the run is interrupted (SIGINT, or SIGTERM from a test's timeout): the
 * daemons are our children but outlive us, and Postfix's master is not our child at all.
 */
const onSignal = new Set<() => Promise<void>>();
let workDir: string | null = null;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping what this run started`);
    void Promise.allSettled([...onSignal].map((stop) => stop())).finally(() => {
      if (workDir && !opt.keep) rmSync(workDir, { recursive: true, force: true });
      process.exit(130);
    });
  });
}

/** One message of each size through the whole MTA to the dumping sink, verified by Mail::DKIM. */
async function checkSignatures(setup: Setup, env: Env, ports: MtaPorts, sink: CountingSink, dump: string): Promise<SetupResult['checks']> {
  const sizes = [...env.messages.keys()];
  for (const sizeKb of sizes) {
    const file = env.messages.get(sizeKb)!.file;
    await runSmtpSource(env.smtpSource, { port: ports.mx, file, from: ENVELOPE.originating, to: ENVELOPE.to, concurrency: 1, reuse: false, messages: 1, timeoutMs: 30000 });
  }
  // Until the sink has them all; a deferred message (the signer refused it, or tempfailed)
  // ends the wait at once with Postfix's reason.
  for (const deadline = Date.now() + 60000; sink.count < sizes.length; ) {
    const q = await env.postfix.queued();
    if (q.deferred.length) throw new Error(`check failed: Postfix deferred the check message: ${q.deferred[0]}\n${env.postfix.maillogTail()}`);
    if (Date.now() > deadline) throw new Error(`check failed: the sink had ${sink.count} of ${sizes.length} messages after 60 s\n${env.postfix.maillogTail()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const delivered = readDump(dump);
  const verdicts = await verifyWithMailDkim(env.ctx.dir, env.ctx.dnsPort, delivered);
  const checks = delivered.map((m, i) => ({ sizeKb: sizeOf(m), signatures: verdicts[i] }));
  const problems = checks.map((c) => [c.sizeKb, signatureProblem(c.signatures, setup.signs)] as const).filter(([, p]) => p);
  if (problems.length) throw new Error(`check failed: ${problems.map(([k, p]) => `${k} KB: ${p}`).join('; ')}`);
  return checks.sort((a, b) => a.sizeKb - b.sizeKb);
}

/** The size a bench message says it has ("Subject: Benchmark message of 20 KB"). */
function sizeOf(message: Buffer): number {
  const m = /^Subject: Benchmark message of (\d+) KB/im.exec(message.subarray(0, 4096).toString('latin1'));
  return m ? Number(m[1]) : -1;
}

/** CPU of one RSA-2048 PKCS#1 v1.5 SHA-256 signature here (the issue's "about 0.9 ms"). */
function rsaSignCpuMs(keys: BenchKeys): number {
  const key = createPrivateKey(readFileSync(keys.rsaFile));
  const data = Buffer.alloc(1024, 1);
  for (let i = 0; i < 20; i++) sign('sha256', data, key);
  const n = 200;
  const before = process.cpuUsage();
  for (let i = 0; i < n; i++) sign('sha256', data, key);
  const used = process.cpuUsage(before);
  return Math.round(((used.user + used.system) / 1000 / n) * 1000) / 1000;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    log(err instanceof Error ? (err.stack ?? err.message) : String(err));
    process.exit(1);
  },
);
