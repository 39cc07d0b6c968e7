/**
 * The results file (bench/results/latest.json, shape given by issue 6) and its Markdown:
 * the matrix table with ratios against the same run's ceiling and amavisd-new, and the
 * issue's targets, each with the measured figure.
 */
import type { LatencyResult } from './latency';
import type { PolicyCell } from './policy';
import type { PathCheck } from './checks';
import type { PathName } from './postseal';

export interface Cell {
  path: PathName;
  sizeKb: number;
  concurrency: number;
  reuse: boolean;
  postsealMps: number;
  directMps: number;
  amavisdMps: number | null;
  /** Added latency: postseal's percentile minus the direct path's, same client, at half postsealMps. */
  p50Ms: number;
  p99Ms: number;
  peakRssMb: number;
  /** postseal's CPU time (all processes) per message, over the throughput runs. */
  cpuMsPerMessage: number;
  /** Content path: clamd's and spamd's CPU per message over postseal's throughput runs (shared cost, in neither figure). */
  scannerCpuMsPerMessage: ScannerCpu | null;
  /** amavisd-new's CPU per message (its processes and the helpers they ran) in its best run of the cell. */
  amavisdCpuMsPerMessage: number | null;
  amavisdScannerCpuMsPerMessage: ScannerCpu | null;
  amavisdMaxServers: number | null;
  latency: {
    rateMps: number;
    messages: number;
    postsealP50Ms: number;
    postsealP99Ms: number;
    directP50Ms: number;
    directP99Ms: number;
    /** postseal's own latency with the sessions back to back (c / throughput, Little's law). */
    saturatedP50Ms: number;
    saturatedP99Ms: number;
    /** p99 of each step at half load (bench/latency.ts), postseal's and the direct path's. */
    postsealStepP99Ms: LatencyResult['stepP99Ms'];
    directStepP99Ms: LatencyResult['stepP99Ms'];
  };
  /**
   * postseal's event-loop delay during its paced latency run (the worst worker's, from its
   * metrics: services/metrics/event-loop.ts): a stall there is a slow message for every
   * session of that worker. Null when the build has no such metric.
   */
  loopDelayMs: { p99: number; max: number } | null;
}

export interface ScannerCpu {
  clamd: number;
  spamd: number;
}

/** A content cell against the inbound cell of the same size, concurrency and reuse: what the content checks add. */
export interface AddedCpu {
  sizeKb: number;
  concurrency: number;
  reuse: boolean;
  postsealMs: number;
  amavisdMs: number | null;
  /** postseal's added CPU ÷ amavisd-new's; the target is ≤ 0.2. */
  ratio: number | null;
  scanners: ScannerCpu | null;
  amavisdScanners: ScannerCpu | null;
}

export function addedCpu(cells: readonly Cell[]): AddedCpu[] {
  const out: AddedCpu[] = [];
  for (const c of cells.filter((x) => x.path === 'content')) {
    const base = cells.find((x) => x.path === 'inbound' && x.sizeKb === c.sizeKb && x.concurrency === c.concurrency && x.reuse === c.reuse);
    if (!base) continue;
    const postsealMs = round2(c.cpuMsPerMessage - base.cpuMsPerMessage);
    const amavisdMs = c.amavisdCpuMsPerMessage !== null && base.amavisdCpuMsPerMessage !== null ? round2(c.amavisdCpuMsPerMessage - base.amavisdCpuMsPerMessage) : null;
    out.push({
      sizeKb: c.sizeKb,
      concurrency: c.concurrency,
      reuse: c.reuse,
      postsealMs,
      amavisdMs,
      ratio: amavisdMs !== null && amavisdMs > 0 ? Math.round((postsealMs / amavisdMs) * 1000) / 1000 : null,
      scanners: c.scannerCpuMsPerMessage,
      amavisdScanners: c.amavisdScannerCpuMsPerMessage,
    });
  }
  return out;
}

const round2 = (n: number) => Math.round(n * 100) / 100;

export function addedCpuMarkdown(list: readonly AddedCpu[]): string {
  if (!list.length) return '';
  const sc = (s: ScannerCpu | null) => (s ? `${fmt(s.clamd, 2)} / ${fmt(s.spamd, 2)}` : '–');
  return [
    'Content checks: CPU per message added to the inbound path (content minus inbound, same run); clamd / spamd CPU per message apart, in neither figure.',
    '',
    '| KB | c | reuse | postseal added ms | amavisd-new added ms | ratio (target ≤ 0.2) | clamd / spamd ms (postseal run) | clamd / spamd ms (amavisd-new run) |',
    '| ---: | ---: | :---: | ---: | ---: | ---: | ---: | ---: |',
    ...list.map(
      (a) =>
        `| ${a.sizeKb} | ${a.concurrency} | ${a.reuse ? 'yes' : 'no'} | ${fmt(a.postsealMs, 2)} | ${fmt(a.amavisdMs, 2)} | ${fmt(a.ratio, 3)} | ${sc(a.scanners)} | ${sc(a.amavisdScanners)} |`,
    ),
  ].join('\n');
}

export interface MemoryResult {
  messageMb: number;
  workerIdleRssMb: number;
  oneMessageGrowthMb: number;
  fourMessagesGrowthMb: number;
}

/** What every results file starts with (this bench's and bench:mta's). */
export interface RunHeader {
  date: string;
  mode: 'full' | 'smoke' | 'partial';
  durationSeconds: number;
  machine: Record<string, unknown>;
  versions: Record<string, string | null>;
  settings: Record<string, unknown>;
}

export interface Results extends RunHeader {
  paths: Record<string, { bank: string; stages: string[]; missingStages: string[]; check: PathCheck | null; amavisdCheck: PathCheck | null }>;
  idleRssMbPerProcess: number[];
  amavisd: { measured: boolean; reason: string | null; peakRssMbByMaxServers: Record<string, number> };
  memory: MemoryResult | null;
  cells: Cell[];
  /** The content checks' added CPU per message (content minus inbound cells). */
  addedCpu?: AddedCpu[];
  /** The policy service's cell (bench/policy.ts), in full runs. */
  policy?: { cells: PolicyCell[]; skipped: string[] };
}

const fmt = (n: number | null, digits = 0) => (n === null ? '–' : n.toFixed(digits));

export function markdown(r: Results): string {
  const rows = r.cells.map((c) => {
    const vsAmavisd = c.amavisdMps ? `${fmt(c.postsealMps / c.amavisdMps, 1)}×` : '–';
    return `| ${c.path} | ${c.sizeKb} | ${c.concurrency} | ${c.reuse ? 'yes' : 'no'} | ${fmt(c.postsealMps)} | ${fmt(c.directMps)} | ${fmt(c.postsealMps / c.directMps, 2)} | ${fmt(c.amavisdMps)} | ${vsAmavisd} | ${fmt(c.p50Ms, 1)} | ${fmt(c.p99Ms, 1)} | ${fmt(c.loopDelayMs?.p99 ?? null, 1)} / ${fmt(c.loopDelayMs?.max ?? null, 1)} | ${fmt(c.peakRssMb)} | ${fmt(c.cpuMsPerMessage, 2)} | ${fmt(c.amavisdCpuMsPerMessage, 2)} |`;
  });
  return [
    '| path | KB | c | reuse | postseal msg/s | direct msg/s | ÷ direct | amavisd msg/s | × amavisd | +p50 ms | +p99 ms | loop delay p99 / max ms | peak RSS MB | CPU ms/msg | amavisd CPU ms/msg |',
    '| --- | ---: | ---: | :---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows,
  ].join('\n');
}

export interface Target {
  what: string;
  measured: string;
  met: boolean | null;
}

/** The targets, judged on this run; null where the run has no figure for one. */
export function targets(r: Results): Target[] {
  const out: Target[] = [];
  const cells = (path: PathName, sizeKb: number, c = 16) => r.cells.filter((x) => x.path === path && x.sizeKb === sizeKb && x.concurrency === c);
  const vsAmavisd = (path: PathName, sizeKb: number, factor: number) => {
    for (const x of cells(path, sizeKb)) {
      const ratio = x.amavisdMps ? x.postsealMps / x.amavisdMps : null;
      out.push({
        what: `${path} ${sizeKb} KB c=16 reuse=${x.reuse ? 'yes' : 'no'}: ≥ ${factor}× amavisd-new`,
        measured: ratio === null ? 'no amavisd-new figure' : `${ratio.toFixed(1)}× (${fmt(x.postsealMps)} vs ${fmt(x.amavisdMps)} msg/s)`,
        met: ratio === null ? null : ratio >= factor,
      });
    }
  };
  vsAmavisd('originating', 2, 6);
  vsAmavisd('originating', 20, 6);
  vsAmavisd('originating', 200, 5);
  vsAmavisd('inbound', 20, 6);
  // Pass-through against the smtp-sink ceiling: 0.35 (issue 6), raised to 0.45 by issue 18.
  for (const x of cells('nochecks', 20)) {
    const ratio = x.postsealMps / x.directMps;
    for (const target of [0.35, 0.45]) {
      out.push({
        what: `nochecks 20 KB c=16 reuse=${x.reuse ? 'yes' : 'no'}: ≥ ${target} of direct`,
        measured: `${ratio.toFixed(2)} (${fmt(x.postsealMps)} of ${fmt(x.directMps)} msg/s)`,
        met: ratio >= target,
      });
    }
  }
  // The latency target is the issue-6 paths'; the content path's added latency is mostly spamd's scan.
  for (const x of r.cells.filter((c) => c.sizeKb === 20 && c.concurrency === 16 && c.reuse && c.path !== 'content')) {
    const loop = x.loopDelayMs ? `; event-loop delay p99 ${fmt(x.loopDelayMs.p99, 1)}, max ${fmt(x.loopDelayMs.max, 1)} ms` : '';
    const at = `at ${x.latency.rateMps} msg/s; at full load p99 ${fmt(x.latency.saturatedP99Ms, 1)} ms${loop}`;
    out.push({ what: `${x.path} 20 KB c=16 reused: added p99 ≤ 15 ms`, measured: `${fmt(x.p99Ms, 1)} ms, p50 ${fmt(x.p50Ms, 1)} ms (${at})`, met: x.p99Ms <= 15 });
  }
  for (const a of addedCpu(r.cells).filter((x) => x.concurrency === 16)) {
    out.push({
      what: `content ${a.sizeKb} KB c=16 reuse=${a.reuse ? 'yes' : 'no'}: added CPU ≤ 1/5 of amavisd-new's`,
      measured:
        a.ratio === null ? `${fmt(a.postsealMs, 2)} ms/msg, no amavisd-new figure` : `${fmt(a.ratio, 3)} (${fmt(a.postsealMs, 2)} vs ${fmt(a.amavisdMs, 2)} ms/msg over inbound)`,
      met: a.ratio === null ? null : a.ratio <= 0.2,
    });
  }
  if (r.idleRssMbPerProcess.length) {
    const max = Math.max(...r.idleRssMbPerProcess);
    out.push({ what: 'idle RSS < 100 MB per worker', measured: `${fmt(max)} MB (largest process)`, met: max < 100 });
  }
  if (r.memory) {
    out.push({ what: `one ${r.memory.messageMb} MB message adds ≤ 32 MB`, measured: `${fmt(r.memory.oneMessageGrowthMb, 1)} MB`, met: r.memory.oneMessageGrowthMb <= 32 });
    out.push({
      what: `four ${r.memory.messageMb} MB messages at once add ≤ 96 MB`,
      measured: `${fmt(r.memory.fourMessagesGrowthMb, 1)} MB`,
      met: r.memory.fourMessagesGrowthMb <= 96,
    });
  }
  return out;
}

export function targetsMarkdown(list: readonly Target[]): string {
  return ['| target | measured | met |', '| --- | --- | :---: |', ...list.map((t) => `| ${t.what} | ${t.measured} | ${t.met === null ? '–' : t.met ? 'yes' : '**no**'} |`)].join(
    '\n',
  );
}
