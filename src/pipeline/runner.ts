/**
 * Builds a bank's pipeline at start-up (ordering the stages by their `after` declarations,
 * bank order breaking ties, cycles refused with STAGE_ORDER_CYCLE) and runs it per message:
 * each stage under timeouts.stageTimeoutMs and the message deadline, stopping at the
 * first final verdict. A stage that throws or times out ends the run with a tempfail.
 * A stage may switch the run to another bank (signer-based policy): that bank's stages not
 * run yet follow, and its settings decide the verdict. A stage's outcome that arrives after its
 * timeout is dropped, and a spool it wrote is disposed of.
 */
import type { Bank, StageId } from '../config/bank-schema';
import { PostsealError } from '../errors';
import type { Spool } from '../transaction/spool';
import type { Transaction } from '../transaction/transaction';
import type { Finding, Stage, StageDeps, StageFactory, StageOutcome } from './stage';
import { decide, isFinal, type Verdict } from './verdict';

export interface PipelineResult {
  readonly verdict: Verdict;
  readonly findings: readonly Finding[];
  /** Milliseconds per stage id, in run order. */
  readonly timings: Readonly<Record<string, number>>;
  /** Spools that stages created; the caller disposes them with the original. */
  readonly spools: readonly Spool[];
}

export interface Pipeline {
  readonly stageIds: readonly StageId[];
  readonly bank: Bank;
  readonly stages: readonly Stage[];
  run(tx: Transaction, signal: AbortSignal): Promise<PipelineResult>;
}

/** `otherBank` finds the pipeline a stage may switch to (StageOutcome.bank). */
export function createPipeline(
  bank: Bank,
  deps: StageDeps,
  factories: Record<StageId, StageFactory>,
  otherBank: (name: string) => Pipeline | undefined = () => undefined,
): Pipeline {
  const stages = orderStages(bank.stages.map((id) => factories[id](bank, deps)));
  const self: Pipeline = {
    stageIds: stages.map((s) => s.id),
    bank,
    stages,
    async run(tx, signal) {
      const findings: Finding[] = [];
      const timings: Record<string, number> = {};
      const spools: Spool[] = [];
      let plan = self;
      const ran = new Set<StageId>();
      for (let i = 0; i < plan.stages.length; i++) {
        const stage = plan.stages[i];
        if (ran.has(stage.id)) continue;
        ran.add(stage.id);
        const started = performance.now();
        try {
          const outcome = await runOne(stage, tx, signal, plan.bank.timeouts.stageTimeoutMs);
          findings.push(...outcome.findings);
          if (outcome.message && outcome.message !== tx.message) {
            if (outcome.message.spool !== tx.message.spool) spools.push(outcome.message.spool);
            // A rewrite whose header was not parsed whole would let later stages (dkim-sign) read fields as body.
            if (!outcome.message.headerComplete) throw new PostsealError('STAGE_FAILED', `stage ${stage.id} made a message whose header section was not parsed whole`);
            tx.message = outcome.message;
          }
          const next = outcome.bank === undefined ? undefined : otherBank(outcome.bank);
          if (next) {
            // The new bank's stages that have not run yet, in its order, then its verdict.
            plan = next;
            i = -1;
          } else if (outcome.bank !== undefined) deps.log.warn({ stage: stage.id, bank: outcome.bank, tx: tx.id }, 'stage asked for an unknown bank');
        } catch (err) {
          timings[stage.id] = performance.now() - started;
          deps.log.warn({ err, stage: stage.id, tx: tx.id }, 'stage failed');
          return { verdict: decide(findings, plan.bank, err), findings, timings, spools };
        }
        timings[stage.id] = Math.round((performance.now() - started) * 1000) / 1000;
        const verdict = decide(findings, plan.bank);
        if (isFinal(verdict)) return { verdict, findings, timings, spools };
      }
      return { verdict: decide(findings, plan.bank), findings, timings, spools };
    },
  };
  return self;
}

/**
 * The reason a settled stage's signal is aborted with. Built once: abort() without a reason
 * makes a DOMException, and its stack trace cost several per cent of a message's CPU time
 * when it was made for every stage of every message (bench/README.md, profile).
 */
const STAGE_SETTLED = new Error('stage settled; its signal only stops work it left behind');

async function runOne(stage: Stage, tx: Transaction, signal: AbortSignal, timeoutMs: number) {
  if (signal.aborted) throw new PostsealError('DEADLINE_EXCEEDED', `message deadline passed before stage ${stage.id}`);
  const stageSignal = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let onDeadline: () => void = () => undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new PostsealError('STAGE_TIMEOUT', `stage ${stage.id} ran longer than ${timeoutMs} ms`)), timeoutMs);
    onDeadline = () => reject(new PostsealError('DEADLINE_EXCEEDED', `message deadline passed in stage ${stage.id}`));
    signal.addEventListener('abort', onDeadline, { once: true });
  });
  const running = stage.run(tx, stageSignal.signal);
  try {
    return await Promise.race([running, timeout]);
  } catch (err) {
    disposeLate(running, tx.message.spool);
    throw err;
  } finally {
    // Aborted only after the race is settled, so a stage that resolves on abort cannot win it.
    clearTimeout(timer);
    signal.removeEventListener('abort', onDeadline);
    stageSignal.abort(signal.aborted ? signal.reason : STAGE_SETTLED);
  }
}

/**
 * A stage that lost the race (timeout, deadline) may still resolve with a message it rewrote
 * into a new spool (header-sanity, seven-bit): nobody else holds that spool, so its file is
 * removed when it arrives instead of staying on disk.
 */
function disposeLate(running: Promise<StageOutcome>, original: Spool): void {
  running
    .then(
      (outcome) => {
        const spool = outcome.message?.spool;
        if (spool && spool !== original) return spool.dispose();
      },
      // Its failure after the race is of no consequence: the run has already tempfailed.
      () => undefined,
    )
    .catch(() => undefined);
}

/** Kahn's algorithm over the declared `after` edges, bank order as the tie-break. */
export function orderStages(stages: Stage[]): Stage[] {
  const present = new Map(stages.map((s) => [s.id, s]));
  const ordered: Stage[] = [];
  const done = new Set<StageId>();
  while (ordered.length < stages.length) {
    const next = stages.find((s) => !done.has(s.id) && (s.after ?? []).every((a) => done.has(a) || !present.has(a)));
    if (!next) {
      const left = stages.filter((s) => !done.has(s.id)).map((s) => s.id);
      throw new PostsealError('STAGE_ORDER_CYCLE', `stages ${left.join(', ')} wait for each other (their "after" lists form a cycle)`);
    }
    ordered.push(next);
    done.add(next.id);
  }
  return ordered;
}
