/**
 * The results file (bench/results/latest.json, shape given by issue 6) and its Markdown:
 * the matrix table with ratios against the same run's ceiling and amavisd-new, and the
 * issue's targets, each with the measured figure.
 */
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
  };
}

export interface MemoryResult {
  messageMb: number;
  workerIdleRssMb: number;
  oneMessageGrowthMb: number;
  fourMessagesGrowthMb: number;
}

export interface Results {
  date: string;
  mode: 'full' | 'smoke' | 'partial';
  durationSeconds: number;
  machine: Record<string, unknown>;
  versions: Record<string, string | null>;
  settings: Record<string, unknown>;
  paths: Record<string, { bank: string; stages: string[]; missingStages: string[]; check: PathCheck | null; amavisdCheck: PathCheck | null }>;
  idleRssMbPerProcess: number[];
  amavisd: { measured: boolean; reason: string | null; peakRssMbByMaxServers: Record<string, number> };
  memory: MemoryResult | null;
  cells: Cell[];
  /** The policy service's cell (bench/policy.ts), in full runs. */
  policy?: { cells: PolicyCell[]; skipped: string[] };
}

const fmt = (n: number | null, digits = 0) => (n === null ? '–' : n.toFixed(digits));

export function markdown(r: Results): string {
  const rows = r.cells.map((c) => {
    const vsAmavisd = c.amavisdMps ? `${fmt(c.postsealMps / c.amavisdMps, 1)}×` : '–';
    return `| ${c.path} | ${c.sizeKb} | ${c.concurrency} | ${c.reuse ? 'yes' : 'no'} | ${fmt(c.postsealMps)} | ${fmt(c.directMps)} | ${fmt(c.postsealMps / c.directMps, 2)} | ${fmt(c.amavisdMps)} | ${vsAmavisd} | ${fmt(c.p50Ms, 1)} | ${fmt(c.p99Ms, 1)} | ${fmt(c.peakRssMb)} | ${fmt(c.cpuMsPerMessage, 2)} |`;
  });
  return [
    '| path | KB | c | reuse | postseal msg/s | direct msg/s | ÷ direct | amavisd msg/s | × amavisd | +p50 ms | +p99 ms | peak RSS MB | CPU ms/msg |',
    '| --- | ---: | ---: | :---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
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
  for (const x of cells('nochecks', 20)) {
    const ratio = x.postsealMps / x.directMps;
    out.push({
      what: `nochecks 20 KB c=16 reuse=${x.reuse ? 'yes' : 'no'}: ≥ 0.35 of direct`,
      measured: `${ratio.toFixed(2)} (${fmt(x.postsealMps)} of ${fmt(x.directMps)} msg/s)`,
      met: ratio >= 0.35,
    });
  }
  for (const x of r.cells.filter((c) => c.sizeKb === 20 && c.concurrency === 16 && c.reuse)) {
    const at = `at ${x.latency.rateMps} msg/s; at full load p99 ${fmt(x.latency.saturatedP99Ms, 1)} ms`;
    out.push({ what: `${x.path} 20 KB c=16 reused: added p99 ≤ 15 ms`, measured: `${fmt(x.p99Ms, 1)} ms, p50 ${fmt(x.p50Ms, 1)} ms (${at})`, met: x.p99Ms <= 15 });
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
