/**
 * One set-up's timed runs. Each run starts with Postfix's queue empty, sends N messages with
 * smtp-source (`sessions` at once; `-d` keeps one connection per session, without it every
 * message has its own) and ends when the sink has counted all N: messages/s is N over that
 * time, so Postfix's queueing and delivery (and a content filter's second queue pass) are in
 * it. CPU per message is each process group's user + system time over the run, from /proc:
 * Postfix's master and every child, those it already reaped included (smtpd, cleanup and
 * smtp processes come and go), and the filter's process tree. N comes from the last rate
 * seen for the same size and reuse setting (a warm-up run first) so a run lasts about
 * `seconds`.
 */
import { measureLatency } from '../latency';
import { runSmtpSource } from '../postfix-tools';
import { cpuSeconds } from '../proc';
import { ENVELOPE } from '../messages';
import type { BenchPostfix } from './postfix';
import { median, type MtaCell, type PacedFigure, type RunFigure } from './report';
import type { CountingSink } from './sink';

export interface Load {
  port: number;
  file: string;
  sessions: number;
  seconds: number;
  runs: number;
  /** One short run per cell, no warm-up: the smoke run only shows that the timing works. */
  smoke: boolean;
}

export interface CellsRequest {
  postfix: BenchPostfix;
  sink: CountingSink;
  smtpSource: string;
  filterPid: number | null;
  sizes: readonly number[];
  reuses: readonly boolean[];
  load(sizeKb: number): Load;
  log(line: string): void;
}

const MAX_MESSAGES = 50000;
/** The first guess before a warm-up: slower than any set-up measured on two cores. */
const FIRST_GUESS_MPS = 60;

export async function measureCells(req: CellsRequest): Promise<MtaCell[]> {
  const cells: MtaCell[] = [];
  for (const sizeKb of req.sizes) {
    const load = req.load(sizeKb);
    const rates = new Map<boolean, number>();
    if (!load.smoke) {
      const warm = await timedRun(req, load, true, count(load, FIRST_GUESS_MPS, 0.5));
      for (const reuse of req.reuses) rates.set(reuse, warm.mps);
    }
    const runs = new Map<boolean, RunFigure[]>(req.reuses.map((r) => [r, []]));
    // Alternated (new, reused, new, reused), so drift in the machine's load hits both alike.
    for (let i = 0; i < load.runs; i++) {
      for (const reuse of req.reuses) {
        const n = load.smoke ? 2 * load.sessions : count(load, rates.get(reuse)!, 1);
        const run = await timedRun(req, load, reuse, n);
        rates.set(reuse, run.mps);
        runs.get(reuse)!.push(run);
        req.log(`${sizeKb} KB ${reuse ? 'reused' : 'new connections'}: ${run.mps.toFixed(0)} msg/s (${run.messages} in ${run.seconds.toFixed(2)} s)`);
      }
    }
    for (const reuse of req.reuses) {
      const r = runs.get(reuse)!;
      cells.push({
        sizeKb,
        reuse,
        runs: r,
        mps: round(median(r.map((x) => x.mps)), 1),
        postfixCpuMs: round(median(r.map((x) => x.postfixCpuMs)), 2),
        filterCpuMs: req.filterPid === null ? null : round(median(r.map((x) => x.filterCpuMs!)), 2),
      });
    }
  }
  return cells;
}

function count(load: Load, mps: number, share: number): number {
  return Math.max(2 * load.sessions, 20, Math.min(MAX_MESSAGES, Math.round(mps * load.seconds * share)));
}

async function timedRun(req: CellsRequest, load: Load, reuse: boolean, messages: number): Promise<RunFigure> {
  await req.postfix.drained(120000);
  const master = req.postfix.masterPid();
  if (master === null) throw new Error(`Postfix's master is gone\n${req.postfix.maillogTail()}`);
  const target = req.sink.count + messages;
  const cpu = () => ({ postfix: cpuSeconds(master, { reaped: true }), filter: req.filterPid === null ? 0 : cpuSeconds(req.filterPid, { reaped: true }) });
  const before = cpu();
  const started = process.hrtime.bigint();
  // Generous: the slowest set-up at a tenth of its usual pace still finishes.
  const timeoutMs = Math.max(60000, load.seconds * 20000);
  const arrived = req.sink.reached(target, timeoutMs);
  arrived.catch(() => undefined);
  await runSmtpSource(req.smtpSource, { port: load.port, file: load.file, from: ENVELOPE.originating, to: ENVELOPE.to, concurrency: load.sessions, reuse, messages, timeoutMs });
  const ended = await arrived.catch(async (err) => {
    const q = await req.postfix.queued().catch(() => null);
    throw new Error(`${(err as Error).message}; Postfix queue: ${JSON.stringify(q)}\n${req.postfix.maillogTail()}`);
  });
  const after = cpu();
  const seconds = Number(ended - started) / 1e9;
  return {
    messages,
    seconds: round(seconds, 3),
    mps: round(messages / seconds, 1),
    postfixCpuMs: round(((after.postfix - before.postfix) * 1000) / messages, 2),
    filterCpuMs: req.filterPid === null ? null : round(((after.filter - before.filter) * 1000) / messages, 2),
  };
}

function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/**
 * `--pace R`: the same Postfix fed at a fixed R messages/s (bench/latency.ts's paced client,
 * `sessions` sessions, reused connections or one per message) instead of flat out, so every set-up does the same work per
 * second and the CPU per message compares like with like: at full speed a set-up that goes
 * faster also spends more on the load generator and the sink, and a busier process batches
 * more per wake-up. Also the latency from MAIL to the 250 after the final dot.
 */
export async function measurePaced(req: CellsRequest, load: Load, message: Buffer, rateMps: number, sizeKb: number, reuse: boolean): Promise<PacedFigure> {
  await req.postfix.drained(120000);
  const master = req.postfix.masterPid();
  if (master === null) throw new Error(`Postfix's master is gone\n${req.postfix.maillogTail()}`);
  const cpu = () => ({ postfix: cpuSeconds(master, { reaped: true }), filter: req.filterPid === null ? 0 : cpuSeconds(req.filterPid, { reaped: true }) });
  const countBefore = req.sink.count;
  const before = cpu();
  const sent = await measureLatency({
    port: load.port,
    message,
    from: ENVELOPE.originating,
    to: ENVELOPE.to,
    concurrency: load.sessions,
    reuse,
    seconds: load.seconds,
    rateMps,
  });
  await req.sink.reached(countBefore + sent.messages, Math.max(60000, load.seconds * 20000));
  const after = cpu();
  return {
    sizeKb,
    reuse,
    rateMps,
    messages: sent.messages,
    postfixCpuMs: round(((after.postfix - before.postfix) * 1000) / sent.messages, 3),
    filterCpuMs: req.filterPid === null ? null : round(((after.filter - before.filter) * 1000) / sent.messages, 3),
    p50Ms: round(sent.p50Ms, 1),
    p99Ms: round(sent.p99Ms, 1),
  };
}
