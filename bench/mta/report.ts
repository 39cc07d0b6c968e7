/**
 * The whole-MTA benchmark's results (bench/results/mta-latest.json) and their Markdown: one
 * row per set-up as in issue 18's table (messages/s at the sink, connection per message /
 * reused, and the CPU per message of Postfix's processes and of the filter's), the cells in
 * detail, and the issue's targets judged on ratios from this one run.
 */
import { targetsMarkdown, type RunHeader, type Target } from '../report';
import type { SetupName } from './setups';
import type { SignatureResult } from './verify';

export interface RunFigure {
  messages: number;
  /** From smtp-source's start to the sink's count reaching the last message. */
  seconds: number;
  mps: number;
  /** CPU (user + system) per message of Postfix's master and all its children, reaped ones included. */
  postfixCpuMs: number;
  /** The same for the filter's process tree; null for Postfix alone. */
  filterCpuMs: number | null;
}

/** A `--pace` run: Postfix fed at a fixed rate, CPU per message and latency (bench/mta/timing.ts measurePaced). */
export interface PacedFigure {
  sizeKb: number;
  reuse: boolean;
  rateMps: number;
  messages: number;
  postfixCpuMs: number;
  filterCpuMs: number | null;
  /** From MAIL FROM to the 250 after the final dot, at Postfix's smtpd. */
  p50Ms: number;
  p99Ms: number;
}

export interface MtaCell {
  sizeKb: number;
  reuse: boolean;
  runs: RunFigure[];
  /** Medians over the runs. */
  mps: number;
  postfixCpuMs: number;
  filterCpuMs: number | null;
}

export interface SetupResult {
  name: SetupName;
  label: string;
  /** The machine's load average (1, 5, 15 min) when the set-up started: how noisy its figures are. */
  loadAvg: number[];
  /** Why it was not measured: not installed here, or (postseal milter) not built yet. */
  skipped: string | null;
  /** A failed check or start-up: the run's exit status is 1. */
  error: string | null;
  /** Mail::DKIM's verdict on each check message's signatures, by size. */
  checks: { sizeKb: number; signatures: SignatureResult[] }[];
  cells: MtaCell[];
  /** `--pace` runs: `--runs` per size. */
  paced?: PacedFigure[];
}

export interface MtaResults extends RunHeader {
  /** CPU of one RSA-2048 signature in this process (node:crypto), the CPU target's yardstick. */
  rsaSignCpuMs: number;
  setups: SetupResult[];
  targets: Target[];
}

export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

const fmt = (n: number | null | undefined, digits = 0) => (n === null || n === undefined ? '–' : n.toFixed(digits));

function range(values: readonly (number | null)[]): string {
  const v = values.filter((x): x is number => x !== null);
  if (!v.length) return '–';
  const [lo, hi] = [Math.min(...v), Math.max(...v)];
  return lo.toFixed(1) === hi.toFixed(1) ? lo.toFixed(1) : `${lo.toFixed(1)}–${hi.toFixed(1)}`;
}

function cell(s: SetupResult, sizeKb: number, reuse: boolean): MtaCell | undefined {
  return s.cells.find((c) => c.sizeKb === sizeKb && c.reuse === reuse);
}

/** The issue's table: one row per set-up. */
export function summaryMarkdown(r: MtaResults): string {
  const sizes = r.settings.sizesKb as number[];
  const runs = r.settings.runs as number;
  const head = `| set-up (median of ${runs} run${runs === 1 ? '' : 's'}, connection per message / reused) | ${sizes.map((k) => `${k} KB msg/s`).join(' | ')} | Postfix CPU ms/msg | filter CPU ms/msg |`;
  const rows = r.setups.map((s) => {
    if (s.skipped || s.error) return `| ${s.label} | ${sizes.map(() => '–').join(' | ')} | – | ${s.skipped ? `skipped: ${s.skipped}` : `**failed**: ${s.error?.split('\n')[0]}`} |`;
    const mps = sizes.map((k) => `${fmt(cell(s, k, false)?.mps)} / ${fmt(cell(s, k, true)?.mps)}`);
    return `| ${s.label} | ${mps.join(' | ')} | ${range(s.cells.map((c) => c.postfixCpuMs))} | ${range(s.cells.map((c) => c.filterCpuMs))} |`;
  });
  return [head, `| --- | ${sizes.map(() => '---:').join(' | ')} | ---: | ---: |`, ...rows].join('\n');
}

/** Every cell with its runs. */
export function cellsMarkdown(r: MtaResults): string {
  const rows = r.setups.flatMap((s) =>
    s.cells.map(
      (c) =>
        `| ${s.name} | ${c.sizeKb} | ${c.reuse ? 'yes' : 'no'} | ${c.runs.map((x) => fmt(x.mps)).join(', ')} | ${fmt(c.mps)} | ${fmt(c.postfixCpuMs, 2)} | ${fmt(c.filterCpuMs, 2)} | ${fmt(s.loadAvg[0], 2)} |`,
    ),
  );
  return [
    '| set-up | KB | reuse | msg/s per run | median | Postfix CPU ms/msg | filter CPU ms/msg | load at set-up start |',
    '| --- | ---: | :---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows,
  ].join('\n');
}

/**
 * Issue 18's targets on this run's figures: postseal milter ≥ 1.1× rspamd milter, postseal
 * content filter ≥ OpenDKIM (messages/s, every size and reuse setting), and postseal's CPU per
 * signed 20 KB message ≤ 1.3× one RSA-2048 signature.
 */
export function mtaTargets(r: Omit<MtaResults, 'targets'>): Target[] {
  const out: Target[] = [];
  const by = (name: SetupName) => r.setups.find((s) => s.name === name);
  const versus = (ours: SetupName, theirs: SetupName, factor: number) => {
    const [a, b] = [by(ours), by(theirs)];
    const why = (name: SetupName, s: SetupResult | undefined) =>
      !s ? `${name} not in this run` : s.skipped || s.error ? `${name}: ${s.skipped ?? s.error?.split('\n')[0]}` : null;
    const missing = why(ours, a) ?? why(theirs, b);
    if (missing || !a || !b) {
      out.push({ what: `${ours} ≥ ${factor}× ${theirs} msg/s`, measured: `no figure (${missing})`, met: null });
      return;
    }
    const sizes = [...new Set(a.cells.map((c) => c.sizeKb))].sort((x, y) => x - y);
    for (const sizeKb of sizes) {
      for (const reuse of [false, true]) {
        const [x, y] = [cell(a, sizeKb, reuse), cell(b, sizeKb, reuse)];
        if (!x || !y) continue;
        const ratio = x.mps / y.mps;
        out.push({
          what: `${ours} ≥ ${factor}× ${theirs}, ${sizeKb} KB, ${reuse ? 'reused' : 'connection per message'}`,
          measured: `${ratio.toFixed(2)}× (${fmt(x.mps)} vs ${fmt(y.mps)} msg/s)`,
          met: ratio >= factor,
        });
      }
    }
  };
  versus('postseal-milter', 'rspamd-milter', 1.1);
  versus('postseal-filter', 'opendkim-milter', 1.0);
  for (const name of ['postseal-filter', 'postseal-milter'] as const) {
    for (const c of by(name)?.cells.filter((x) => x.sizeKb === 20 && x.filterCpuMs !== null) ?? []) {
      const limit = 1.3 * r.rsaSignCpuMs;
      out.push({
        what: `${name} CPU per signed 20 KB message ≤ 1.3× one RSA-2048 signature (${fmt(limit, 2)} ms), ${c.reuse ? 'reused' : 'connection per message'}`,
        measured: `${fmt(c.filterCpuMs, 2)} ms (${fmt(c.filterCpuMs! / r.rsaSignCpuMs, 1)}× the ${fmt(r.rsaSignCpuMs, 2)} ms signature)`,
        met: c.filterCpuMs! <= limit,
      });
    }
  }
  return out;
}

export function mtaMarkdown(r: MtaResults): string {
  const load = (k: string) => ((r.machine[k] as number[] | undefined) ?? []).join(' ');
  const about = `\`npm run bench:mta\` (${r.mode}) at ${r.versions.commit ?? '?'}, ${r.date}, ${r.durationSeconds} s; ${r.machine.cores} cores (${r.machine.cpu}); load average ${load('loadAvgAtStart')} at the start, ${load('loadAvgAtEnd')} at the end; one RSA-2048 signature ${fmt(r.rsaSignCpuMs, 2)} ms CPU.`;
  const paced = r.setups.some((s) => s.paced?.length) ? `\n\n${pacedMarkdown(r)}` : '';
  return `${about}\n\n${summaryMarkdown(r)}\n\n${cellsMarkdown(r)}${paced}\n\n${targetsMarkdown(r.targets)}\n`;
}

/** The `--pace` runs: CPU per message of each set-up at the same fixed rate, each run and the median. */
export function pacedMarkdown(r: MtaResults): string {
  const rows = r.setups.flatMap((s) => {
    const cells = [...new Set((s.paced ?? []).map((p) => `${p.sizeKb} ${p.reuse}`))];
    return cells.map((key) => {
      const runs = s.paced!.filter((p) => `${p.sizeKb} ${p.reuse}` === key);
      const list = (f: (p: PacedFigure) => number | null, d: number) => runs.map((p) => fmt(f(p), d)).join(', ');
      const med = (f: (p: PacedFigure) => number | null) => (runs.every((p) => f(p) !== null) ? fmt(median(runs.map((p) => f(p)!)), 2) : '–');
      return `| ${s.name} | ${runs[0].sizeKb} | ${runs[0].reuse ? 'yes' : 'no'} | ${runs[0].rateMps} | ${runs.reduce((n, p) => n + p.messages, 0)} | ${list((p) => p.postfixCpuMs, 2)} (${med((p) => p.postfixCpuMs)}) | ${list((p) => p.filterCpuMs, 2)} (${med((p) => p.filterCpuMs)}) | ${runs.map((p) => `${fmt(p.p50Ms, 1)} / ${fmt(p.p99Ms, 1)}`).join(', ')} |`;
    });
  });
  return [
    '| set-up, paced | KB | reuse | msg/s | messages | Postfix CPU ms/msg per run (median) | filter CPU ms/msg per run (median) | p50 / p99 ms per run |',
    '| --- | ---: | :---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows,
  ].join('\n');
}
