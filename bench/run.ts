/**
 * `npm run bench`: postseal's throughput, added latency and memory against the direct
 * smtp-source → smtp-sink ceiling and amavisd-new, all on loopback in one run (bench/README.md).
 *   --smoke             one small cell per path, checks enforced, nothing written (for CI)
 *   --profile           CPU profile of one path (--paths, default originating; --sizes, default 20), c=16
 *   --workers N         postseal worker processes (default 0: one per core)
 *   --sizes/--concurrency/--paths LIST, --reuse yes|no|both: a part of the matrix (content brings inbound,
 *                       its baseline: the content checks' added CPU is content minus inbound)
 *   --seconds S         length of each throughput run (default 1.5)
 *   --no-amavisd, --no-memory, --out FILE, --keep (leave the work folder: configs, logs)
 *   --node-args=ARGS    extra node/V8 options for postseal's processes (A/B runs of V8 settings)
 *   --latency-rate N    pace the latency runs at N msg/s instead of half the throughput (A/B runs)
 *   --latency-rounds N  paced latency runs per side, alternated with the direct ones and pooled (default 3)
 *   --srs               SRS map lookups/s, postseal against postsrsd (bench/srs.ts); --seconds, --concurrency
 *   --clients           the content path's pieces alone (bench/clients.ts): CPU per call of the clamd and
 *                       spamd clients and the MIME walk, at --sizes (default 2,20)
 *   --policy            only the policy service's cell (bench/policy.ts): requests/s at --concurrency
 *                       (default 1,16,64) vs postgrey and policyd-spf, sqlite and Redis; a full run includes it
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { amavisdUnavailable, startAmavisd } from './amavisd';
import { checkMessage, contentRejects, readDump, type PathCheck } from './checks';
import { startDnsServer } from './dns-server';
import { AMAVISD_PATHS, amavisdCells, messageKey, postsealCells, type Grid, type Messages, type ScannerPids } from './matrix';
import { Throughput } from './measure';
import { memoryBenchmark } from './memory';
import { ENVELOPE, makeKeys, makeMessage, type BenchKeys } from './messages';
import { findTool, runSmtpSource, startSmtpSink, type SmtpSink } from './postfix-tools';
import { POLICY_DNS, policyBenchmark, policyMarkdown } from './policy';
import { PATHS, ROOT, startPostseal, type PathName } from './postseal';
import { profilePath } from './profile';
import { freePort, readRss } from './proc';
import { addedCpu, addedCpuMarkdown, markdown, targets, targetsMarkdown, type Results } from './report';
import { BENCH_RULE, EICAR, GTUBE, startScanners, type Scanners } from './scanners';
import { srsBenchmark, srsMarkdown } from './srs';
import { clientsBenchmark, clientsMarkdown } from './clients';
import { describeMachine, describeVersions } from './versions';

const { values: opt } = parseArgs({
  options: {
    smoke: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    workers: { type: 'string', default: '0' },
    sizes: { type: 'string' },
    concurrency: { type: 'string' },
    paths: { type: 'string' },
    reuse: { type: 'string', default: 'both' },
    seconds: { type: 'string' },
    'no-amavisd': { type: 'boolean', default: false },
    'no-memory': { type: 'boolean', default: false },
    out: { type: 'string' },
    keep: { type: 'boolean', default: false },
    srs: { type: 'boolean', default: false },
    clients: { type: 'boolean', default: false },
    policy: { type: 'boolean', default: false },
    'node-args': { type: 'string' },
    'latency-rate': { type: 'string' },
    'latency-rounds': { type: 'string' },
  },
});

const list = (v: string | undefined, fallback: number[]) => (v ? v.split(',').map(Number) : fallback);
const log = (line: string) => process.stderr.write(`bench: ${line}\n`);

async function main(): Promise<number> {
  if (opt.srs) return await srsOnly();
  if (opt.clients) return await clientsOnly();
  const smtpSource = findTool('smtp-source');
  const smtpSinkBin = findTool('smtp-sink');
  if (!smtpSource || !smtpSinkBin) {
    log("Postfix's smtp-source and smtp-sink are needed (Debian package postfix)");
    return 2;
  }
  const started = Date.now();
  const partial = !!(
    opt.sizes ||
    opt.concurrency ||
    opt.paths ||
    opt.reuse !== 'both' ||
    opt.seconds ||
    opt['no-amavisd'] ||
    opt['no-memory'] ||
    opt.workers !== '0' ||
    opt['node-args']
  );
  const mode: Results['mode'] = opt.smoke ? 'smoke' : partial ? 'partial' : 'full';
  const seconds = Number(opt.seconds ?? (opt.smoke ? 0.5 : 1.5));
  const grid: Grid = {
    sizes: opt.smoke ? [2] : list(opt.sizes, [2, 20, 200]),
    concurrencies: opt.smoke ? [1] : list(opt.concurrency, [1, 16, 64]),
    reuses: opt.smoke ? [true] : opt.reuse === 'both' ? [true, false] : [opt.reuse === 'yes'],
    paths: PATHS.filter((p) => !opt.paths || wantedPaths(opt.paths).includes(p.name)),
    latencySeconds: opt.smoke ? 0.3 : Math.max(0.5, seconds * 0.6),
    latencyRounds: opt.smoke ? 1 : Number(opt['latency-rounds'] ?? 3),
    latencyRateMps: opt['latency-rate'] ? Number(opt['latency-rate']) : undefined,
  };
  const workers = Number(opt.workers);
  // Extra node/V8 options for postseal (the primary passes them on to its workers), for A/B runs.
  const nodeArgs = opt['node-args']?.split(/\s+/).filter(Boolean);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'postseal-bench-'));
  const keys = makeKeys(dir);
  const dns = await startDnsServer(new Map([...keys.dns, ...POLICY_DNS]));
  const sinkPort = await freePort();
  const sink: { current: SmtpSink } = { current: await startSmtpSink(smtpSinkBin, sinkPort) };
  let scanners: Scanners | null = null;
  let scannerPids: ScannerPids | undefined;
  try {
    if (opt.policy) {
      const policy = await policyBenchmark({ dir, dnsPort: dns.port, spfDomain: 'policy.bench.example', concurrencies: list(opt.concurrency, [1, 16, 64]), seconds, log });
      for (const why of policy.skipped) log(`policy: skipped ${why}`);
      process.stdout.write(`${policyMarkdown(policy.cells)}\n`);
      return 0;
    }
    if (opt.profile) {
      const name = (opt.paths ?? 'originating') as PathName;
      if (!PATHS.some((p) => p.name === name)) throw new Error(`--profile takes one path of ${PATHS.map((p) => p.name).join(', ')}`);
      const summary = await profilePath({
        dir,
        keys,
        sinkPort,
        dnsPort: dns.port,
        smtpSource,
        seconds: Number(opt.seconds ?? 15),
        path: name,
        reuse: opt.reuse !== 'no',
        sizeKb: Number(opt.sizes ?? 20),
      });
      process.stdout.write(`${summary}\n`);
      return 0;
    }
    const messages: Messages = new Map();
    for (const sizeKb of grid.sizes) {
      for (const kind of ['plain', 'dual', 'signed'] as const) messages.set(messageKey(kind, sizeKb), await makeMessage(dir, sizeKb, kind, keys));
    }
    if (grid.paths.some((p) => p.content)) {
      scanners = await startScanners(dir, log);
      scannerPids = { clamd: scanners.clamd.pid, spamd: scanners.spamd.pid };
    }
    const addresses = scanners ? { clamdSocket: scanners.clamd.socket, spamdHost: scanners.spamd.host, spamdPort: scanners.spamd.port } : undefined;
    const ps = await startPostseal({ dir, keys, sinkPort, dnsPort: dns.port, workers, paths: grid.paths.map((p) => p.name), scanners: addresses, metrics: true, nodeArgs });
    const results: Results = {
      date: new Date().toISOString(),
      mode,
      durationSeconds: 0,
      machine: describeMachine(),
      versions: describeVersions(),
      settings: {
        workers: workers || os.availableParallelism(),
        throughputSeconds: seconds,
        latencySeconds: grid.latencySeconds,
        latencyRounds: grid.latencyRounds,
        messageBytes: Object.fromEntries([...messages].map(([k, m]) => [k, m.bytes.length])),
      },
      paths: {},
      idleRssMbPerProcess: readRss(ps.pid).currentMb,
      amavisd: { measured: false, reason: null, peakRssMbByMaxServers: {} },
      memory: null,
      cells: [],
    };
    let failed = false;
    try {
      const sent = grid.paths.map((p) => ({ port: ps.ports[p.name], p }));
      const checks = await captureChecks(
        sink,
        smtpSinkBin,
        smtpSource,
        sent.map(({ port, p }) => ({ port, file: messages.get(messageKey(p.kind, grid.sizes[0]))!, from: p.from })),
        keys,
      );
      for (const [i, p] of grid.paths.entries()) {
        const st = ps.banks.stages[p.name];
        results.paths[p.name] = { bank: p.bank, stages: st.runs, missingStages: st.missing, check: checks[i], amavisdCheck: null };
        const problem = checkProblem(p.name, st.runs, checks[i]);
        if (problem) {
          log(`check failed on ${p.name}: ${problem}`);
          failed = true;
        }
        if (st.missing.length) log(`${p.name}: stages not built yet, measured without them: ${st.missing.join(', ')}`);
        if (p.content) {
          const refused = await contentRejects(ps.ports[p.name], EICAR, GTUBE);
          if (refused.length) {
            log(`check failed on ${p.name}: not refused: ${refused.join('; ')}`);
            failed = true;
          }
        }
      }
      if (failed) return 1;
      const tp = new Throughput(smtpSource, seconds, (key) => (key.startsWith('direct') ? 2000 : key.startsWith('amavisd') ? 30 : 200));
      for (const p of grid.paths) {
        await runSmtpSource(smtpSource, {
          port: ps.ports[p.name],
          file: messages.get(messageKey(p.kind, grid.sizes[0]))!.file,
          from: p.from,
          to: ENVELOPE.to,
          concurrency: 16,
          reuse: true,
          messages: opt.smoke ? 50 : 1500,
          timeoutMs: 120000,
        });
      }
      results.cells = await postsealCells(grid, ps, sinkPort, messages, tp, log, scannerPids);
    } finally {
      await ps.stop();
    }
    const why = opt['no-amavisd'] || opt.smoke ? 'not asked for (--no-amavisd or --smoke)' : amavisdUnavailable();
    results.amavisd.reason = why;
    if (!why) {
      const tp = new Throughput(smtpSource, seconds, () => 30);
      const paths = grid.paths.filter((p) => (AMAVISD_PATHS as readonly string[]).includes(p.name));
      const amScanners = scanners ? { clamdSocket: scanners.clamd.socket } : undefined;
      const checked = await startAmavisd({ dir, maxServers: 2, keys, sinkPort, dnsPort: dns.port, scanners: amScanners });
      try {
        const checks = await captureChecks(
          sink,
          smtpSinkBin,
          smtpSource,
          paths.map((p) => ({ port: checked.ports[p.name as 'inbound'], file: messages.get(messageKey(p.kind, grid.sizes[0]))!, from: p.from })),
          keys,
        );
        for (const [i, p] of paths.entries()) results.paths[p.name].amavisdCheck = checks[i];
        // The same work as postseal's, or the comparison means nothing.
        const wanted: Record<string, string[]> = { inbound: ['dkim-verify'], originating: ['dkim-sign'], nochecks: [], content: ['dkim-verify', 'virus', 'spam'] };
        const problems = paths.map((p, i) => checkProblem(p.name, wanted[p.name], checks[i])).filter((x) => x);
        for (const p of paths.filter((x) => x.content)) {
          const refused = await contentRejects(checked.ports.content, EICAR, GTUBE);
          if (refused.length) problems.push(`${p.name}: not refused: ${refused.join('; ')}`);
        }
        if (problems.length) throw new Error(`amavisd-new does not do the benchmark's work: ${problems.join('; ')}`);
      } finally {
        // Its cached connection to the capturing sink is gone; a fresh instance measures.
        await checked.stop();
      }
      for (const maxServers of [2, 4, 8]) {
        const am = await startAmavisd({ dir, maxServers, keys, sinkPort, dnsPort: dns.port, scanners: amScanners });
        try {
          await amavisdCells(grid, am, messages, tp, results.cells, log, scannerPids);
          results.amavisd.peakRssMbByMaxServers[maxServers] = readRss(am.pid).peakMb;
        } finally {
          await am.stop();
        }
      }
      results.amavisd.measured = true;
    }
    if (!opt['no-memory'] && !opt.smoke) results.memory = await memoryBenchmark({ dir, keys, sinkPort, dnsPort: dns.port, smtpSource, messageMb: 50 });
    if (mode === 'full') results.policy = await policyBenchmark({ dir, dnsPort: dns.port, spfDomain: 'policy.bench.example', concurrencies: grid.concurrencies, seconds, log });
    results.durationSeconds = Math.round((Date.now() - started) / 1000);
    results.machine.loadAvgAtEnd = os.loadavg().map((l) => Math.round(l * 100) / 100);
    results.addedCpu = addedCpu(results.cells);
    const added = results.addedCpu.length ? `\n${addedCpuMarkdown(results.addedCpu)}\n` : '';
    const table = `${markdown(results)}\n${added}\n${targetsMarkdown(targets(results))}\n${results.policy ? `\n${policyMarkdown(results.policy.cells)}\n` : ''}`;
    process.stdout.write(table);
    const out = opt.out ?? (mode === 'full' ? path.join(ROOT, 'bench/results/latest.json') : null);
    if (out) {
      mkdirSync(path.dirname(out), { recursive: true });
      writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
      writeFileSync(out.replace(/\.json$/, '.md'), table);
      log(`results written to ${out}`);
    }
    return 0;
  } finally {
    await scanners?.stop();
    await sink.current.stop();
    await dns.close();
    if (opt.keep) log(`work folder kept: ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

/** The paths asked for; content brings inbound, the baseline of its added CPU. */
function wantedPaths(list: string): string[] {
  const names = list.split(',');
  const unknown = names.filter((n) => !PATHS.some((p) => p.name === n));
  if (unknown.length) throw new Error(`unknown path ${unknown.join(', ')}: the paths are ${PATHS.map((p) => p.name).join(', ')}`);
  return names.includes('content') && !names.includes('inbound') ? [...names, 'inbound'] : names;
}

/** Swaps the fast sink for a capturing one, sends one message to each port, and checks each. */
async function captureChecks(
  sink: { current: SmtpSink },
  bin: string,
  smtpSource: string,
  sends: { port: number; file: { file: string; bytes: Buffer }; from: string }[],
  keys: BenchKeys,
): Promise<PathCheck[]> {
  const port = sink.current.port;
  const dump = path.join(os.tmpdir(), `postseal-bench-dump-${process.pid}-${Date.now()}`);
  await sink.current.stop();
  const capture = await startSmtpSink(bin, port, dump);
  try {
    for (const s of sends)
      await runSmtpSource(smtpSource, { port: s.port, file: s.file.file, from: s.from, to: ENVELOPE.to, concurrency: 1, reuse: false, messages: 1, timeoutMs: 30000 });
  } finally {
    await capture.stop();
    sink.current = await startSmtpSink(bin, port);
  }
  const delivered = readDump(dump);
  rmSync(dump, { force: true });
  if (delivered.length !== sends.length) throw new Error(`checks: ${sends.length} messages sent, ${delivered.length} delivered`);
  return Promise.all(delivered.map((d, i) => checkMessage(d, sends[i].file.bytes, keys.dns)));
}

function checkProblem(name: PathName, runs: readonly string[], c: PathCheck): string | null {
  const wantSigs = name === 'originating-dual' ? 2 : name === 'originating' ? 1 : 0;
  if (runs.includes('dkim-sign') && c.ownSignaturesValid < wantSigs) return `${c.ownSignaturesValid} of ${wantSigs} signatures verify (${c.signaturesAdded} added)`;
  if (runs.includes('dkim-verify') && c.authResultsDkim !== 'pass') return `Authentication-Results dkim=${c.authResultsDkim}`;
  if (runs.includes('seven-bit') && c.eightBitOut) return '8-bit bytes reached the downstream';
  if (runs.includes('virus') && !c.virusScanned) return 'no X-Virus-Scanned: clamd was not asked';
  if (runs.includes('spam') && !c.spamStatus?.includes(BENCH_RULE)) return `X-Spam-Status does not name ${BENCH_RULE} (${c.spamStatus ?? 'none'}): spamd was not asked`;
  return null;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    log(err instanceof Error ? (err.stack ?? err.message) : String(err));
    process.exit(1);
  },
);

/** `--clients`: the content path's pieces alone (they need clamd and spamd, not the SMTP tools). */
async function clientsOnly(): Promise<number> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'postseal-bench-clients-'));
  try {
    const cells = await clientsBenchmark({ dir, keys: makeKeys(dir), sizes: list(opt.sizes, [2, 20]), log });
    process.stdout.write(`${clientsMarkdown(cells)}\n`);
    return 0;
  } finally {
    if (!opt.keep) rmSync(dir, { recursive: true, force: true });
  }
}

/** `--srs`: the SRS lookup benchmark alone (it needs postsrsd, not the SMTP tools). */
async function srsOnly(): Promise<number> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'postseal-bench-srs-'));
  try {
    const cells = await srsBenchmark({ dir, seconds: Number(opt.seconds ?? 2), concurrencies: list(opt.concurrency, [1, 16, 64]), log });
    process.stdout.write(`${srsMarkdown(cells)}\n`);
    return 0;
  } finally {
    if (!opt.keep) rmSync(dir, { recursive: true, force: true });
  }
}
