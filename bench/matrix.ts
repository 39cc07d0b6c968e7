/**
 * The cell matrix: for every size, concurrency and reuse setting, the direct smtp-source →
 * smtp-sink ceiling, then each path through postseal (throughput, added latency, peak RSS),
 * then, per $max_servers setting, each path through amavisd-new, keeping the best.
 */
import type { BenchMessage } from './messages';
import { ENVELOPE } from './messages';
import { measureLatency, pooled, type LatencyResult } from './latency';
import type { Throughput } from './measure';
import type { PathName, PathSpec, Postseal } from './postseal';
import { cpuSeconds, readRss, resetPeakRss, round1, round2 } from './proc';
import type { Cell } from './report';

export interface Grid {
  sizes: readonly number[];
  concurrencies: readonly number[];
  reuses: readonly boolean[];
  paths: readonly PathSpec[];
  latencySeconds: number;
  /**
   * Paced runs per side, alternated (postseal, direct, postseal, ...) and pooled: one run's
   * p99 is its few slowest messages, which a burst of other work on the machine decides.
   */
  latencyRounds: number;
  /** Pace the latency runs at this rate (msg/s) instead of half the measured throughput (A/B runs). */
  latencyRateMps?: number;
}

export type Messages = Map<string, BenchMessage>;
export const messageKey = (kind: string, sizeKb: number) => `${kind}:${sizeKb}`;

type Progress = (line: string) => void;

/** The scanners' pids (bench/scanners.ts): their CPU is the shared cost, reported apart. */
export interface ScannerPids {
  clamd: number;
  spamd: number;
}

const scannerCpu = (pids: ScannerPids) => ({ clamd: cpuSeconds(pids.clamd, { reaped: true }), spamd: cpuSeconds(pids.spamd, { reaped: true }) });

/** Scanner CPU ms per message between two readings. */
function scannerCpuMs(before: ReturnType<typeof scannerCpu>, pids: ScannerPids, messages: number): { clamd: number; spamd: number } {
  const now = scannerCpu(pids);
  return { clamd: round2(((now.clamd - before.clamd) * 1000) / messages), spamd: round2(((now.spamd - before.spamd) * 1000) / messages) };
}

export async function postsealCells(grid: Grid, ps: Postseal, sinkPort: number, messages: Messages, tp: Throughput, progress: Progress, scanners?: ScannerPids): Promise<Cell[]> {
  const cells: Cell[] = [];
  for (const sizeKb of grid.sizes) {
    for (const concurrency of grid.concurrencies) {
      for (const reuse of grid.reuses) {
        const plain = messages.get(messageKey('plain', sizeKb))!;
        const load = { from: ENVELOPE.originating, to: ENVELOPE.to, concurrency, reuse };
        const direct = await tp.measure({ ...load, key: `direct:${sizeKb}:${reuse}`, port: sinkPort, file: plain.file });
        for (const spec of grid.paths) {
          const msg = messages.get(messageKey(spec.kind, sizeKb))!;
          const own = { ...load, from: spec.from };
          resetPeakRss(ps.pid);
          const cpuBefore = cpuSeconds(ps.pid);
          const scanBefore = spec.content && scanners ? scannerCpu(scanners) : null;
          const run = await tp.measure({ ...own, key: `postseal:${spec.name}:${sizeKb}:${reuse}`, port: ps.ports[spec.name], file: msg.file });
          const cpuMs = ((cpuSeconds(ps.pid) - cpuBefore) * 1000) / run.messagesSent;
          const scanMs = scanBefore && scanners ? scannerCpuMs(scanBefore, scanners, run.messagesSent) : null;
          // Added latency at half the throughput just measured, both ways at the same rate;
          // then postseal's own latency at full load, for the record.
          const rateMps = grid.latencyRateMps ?? run.mps / 2;
          const rounds: { lat: LatencyResult; direct: LatencyResult; loop: { p99: number; max: number } | null }[] = [];
          for (let r = 0; r < grid.latencyRounds; r++) {
            await ps.loopDelay(); // resets the gauges: the next read covers the paced run only
            const lat = await latency(ps.ports[spec.name], msg, own, grid.latencySeconds, rateMps);
            const loop = await ps.loopDelay();
            rounds.push({ lat, loop, direct: await latency(sinkPort, msg, own, grid.latencySeconds, rateMps) });
          }
          const lat = pooled(rounds.map((r) => r.lat));
          const directLat = pooled(rounds.map((r) => r.direct));
          // The worst worker's in the worst round: a stall is a slow message for every session of that worker.
          const loops = rounds.flatMap((r) => (r.loop ? [r.loop] : []));
          const loopDelayMs = loops.length ? { p99: Math.max(...loops.map((l) => l.p99)), max: Math.max(...loops.map((l) => l.max)) } : null;
          const saturated = await latency(ps.ports[spec.name], msg, own, grid.latencySeconds);
          const cell: Cell = {
            path: spec.name,
            sizeKb,
            concurrency,
            reuse,
            postsealMps: Math.round(run.mps),
            directMps: Math.round(direct.mps),
            amavisdMps: null,
            p50Ms: round2(lat.p50Ms - directLat.p50Ms),
            p99Ms: round2(lat.p99Ms - directLat.p99Ms),
            peakRssMb: round1(readRss(ps.pid).peakMb),
            cpuMsPerMessage: round2(cpuMs),
            scannerCpuMsPerMessage: scanMs,
            amavisdCpuMsPerMessage: null,
            amavisdScannerCpuMsPerMessage: null,
            amavisdMaxServers: null,
            latency: {
              rateMps: Math.round(rateMps),
              messages: lat.messages,
              postsealP50Ms: round2(lat.p50Ms),
              postsealP99Ms: round2(lat.p99Ms),
              directP50Ms: round2(directLat.p50Ms),
              directP99Ms: round2(directLat.p99Ms),
              saturatedP50Ms: round2(saturated.p50Ms),
              saturatedP99Ms: round2(saturated.p99Ms),
              postsealStepP99Ms: lat.stepP99Ms,
              directStepP99Ms: directLat.stepP99Ms,
            },
            loopDelayMs,
          };
          cells.push(cell);
          progress(
            `${spec.name} ${sizeKb} KB c=${concurrency} reuse=${reuse ? 'yes' : 'no'}: ${cell.postsealMps} msg/s (direct ${cell.directMps}), +p50 ${cell.p50Ms} ms, +p99 ${cell.p99Ms} ms (at ${cell.latency.rateMps} msg/s, loop delay p99 ${loopDelayMs?.p99 ?? '–'} / max ${loopDelayMs?.max ?? '–'} ms, step p99 MAIL/RCPT/DATA/dot ${stepsText(lat.stepP99Ms)} (direct ${stepsText(directLat.stepP99Ms)}) ms; p99 ${cell.latency.saturatedP99Ms} ms at full load), RSS ${cell.peakRssMb} MB, ${cell.cpuMsPerMessage} ms CPU/msg${scanMs ? ` (clamd ${scanMs.clamd}, spamd ${scanMs.spamd} ms/msg)` : ''}`,
          );
        }
      }
    }
  }
  return cells;
}

function latency(
  port: number,
  msg: BenchMessage,
  load: { from: string; to: string; concurrency: number; reuse: boolean },
  seconds: number,
  rateMps?: number,
): Promise<LatencyResult> {
  return measureLatency({ port, message: msg.bytes, ...load, seconds, rateMps });
}

/** amavisd-new's paths: it has no Ed25519 signing, so no dual path. */
export const AMAVISD_PATHS: readonly PathName[] = ['inbound', 'originating', 'nochecks', 'content'];

/** amavisd-new's cells for one $max_servers; each cell keeps its best rate, with that run's CPU. */
export async function amavisdCells(
  grid: Grid,
  am: { pid: number; maxServers: number; ports: Record<'inbound' | 'originating' | 'nochecks' | 'content', number> },
  messages: Messages,
  tp: Throughput,
  cells: Cell[],
  progress: Progress,
  scanners?: ScannerPids,
): Promise<void> {
  const maxServers = am.maxServers;
  const ports = am.ports;
  for (const sizeKb of grid.sizes) {
    for (const concurrency of grid.concurrencies) {
      for (const reuse of grid.reuses) {
        for (const spec of grid.paths) {
          if (spec.name === 'originating-dual') continue;
          const msg = messages.get(messageKey(spec.kind, sizeKb))!;
          const cpuBefore = cpuSeconds(am.pid, { reaped: true });
          const scanBefore = spec.content && scanners ? scannerCpu(scanners) : null;
          const run = await tp.measure({
            key: `amavisd${maxServers}:${spec.name}:${sizeKb}:${reuse}`,
            port: ports[spec.name],
            file: msg.file,
            from: spec.from,
            to: ENVELOPE.to,
            concurrency,
            reuse,
          });
          const cpuMs = round2(((cpuSeconds(am.pid, { reaped: true }) - cpuBefore) * 1000) / run.messagesSent);
          const scanMs = scanBefore && scanners ? scannerCpuMs(scanBefore, scanners, run.messagesSent) : null;
          const cell = cells.find((c) => c.path === spec.name && c.sizeKb === sizeKb && c.concurrency === concurrency && c.reuse === reuse);
          if (cell && (cell.amavisdMps === null || run.mps > cell.amavisdMps)) {
            cell.amavisdMps = Math.round(run.mps);
            cell.amavisdMaxServers = maxServers;
            cell.amavisdCpuMsPerMessage = cpuMs;
            cell.amavisdScannerCpuMsPerMessage = scanMs;
          }
          const scan = scanMs ? ` (clamd ${scanMs.clamd}, spamd ${scanMs.spamd} ms/msg)` : '';
          progress(
            `amavisd-new max_servers=${maxServers} ${spec.name} ${sizeKb} KB c=${concurrency} reuse=${reuse ? 'yes' : 'no'}: ${Math.round(run.mps)} msg/s, ${cpuMs} ms CPU/msg${scan}`,
          );
        }
      }
    }
  }
}

function stepsText(s: LatencyResult['stepP99Ms']): string {
  return [s.mail, s.rcpt, s.data, s.dot].map((x) => x.toFixed(1)).join('/');
}
