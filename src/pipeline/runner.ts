/**
 * Builds a bank's pipeline at start-up (ordering the stages by their `after` declarations,
 * bank order breaking ties, cycles refused with STAGE_ORDER_CYCLE) and runs it per message:
 * each stage under timeouts.stageTimeoutMs and the message deadline, stopping at the
 * first final verdict. A stage that throws or times out ends the run with a tempfail.
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { Bank, StageId } from '../config/bank-schema';
import { PostsealError } from '../errors';
import type { Spool } from '../transaction/spool';
import type { Transaction } from '../transaction/transaction';
import type { Finding, Stage, StageDeps, StageFactory } from './stage';
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
  run(tx: Transaction, signal: AbortSignal): Promise<PipelineResult>;
}

export function createPipeline(bank: Bank, deps: StageDeps, factories: Record<StageId, StageFactory>): Pipeline {
  const stages = orderStages(bank.stages.map((id) => factories[id](bank, deps)));
  const stageTimeoutMs = bank.timeouts.stageTimeoutMs;
  return {
    stageIds: stages.map((s) => s.id),
    async run(tx, signal) {
      const findings: Finding[] = [];
      const timings: Record<string, number> = {};
      const spools: Spool[] = [];
      for (const stage of stages) {
        const started = performance.now();
        try {
          const outcome = await runOne(stage, tx, signal, stageTimeoutMs);
          findings.push(...outcome.findings);
          if (outcome.message && outcome.message !== tx.message) {
            if (outcome.message.spool !== tx.message.spool) spools.push(outcome.message.spool);
            tx.message = outcome.message;
          }
        } catch (err) {
          timings[stage.id] = performance.now() - started;
          deps.log.warn({ err, stage: stage.id, tx: tx.id }, 'stage failed');
          return { verdict: decide(findings, bank, err), findings, timings, spools };
        }
        timings[stage.id] = Math.round((performance.now() - started) * 1000) / 1000;
        const verdict = decide(findings, bank);
        if (isFinal(verdict)) return { verdict, findings, timings, spools };
      }
      return { verdict: decide(findings, bank), findings, timings, spools };
    },
  };
}

async function runOne(stage: Stage, tx: Transaction, signal: AbortSignal, timeoutMs: number) {
  const timer = new AbortController();
  const both = AbortSignal.any([signal, timer.signal]);
  const timeout = delay(timeoutMs, undefined, { signal: both }).then(
    () => {
      // The stage's signal is aborted in `finally`, after the race is lost, so a stage that
      // resolves on abort cannot win it.
      throw new PostsealError('STAGE_TIMEOUT', `stage ${stage.id} ran longer than ${timeoutMs} ms`);
    },
    () => {
      if (signal.aborted) throw new PostsealError('DEADLINE_EXCEEDED', `message deadline passed in stage ${stage.id}`);
      return new Promise<never>(() => undefined);
    },
  );
  try {
    return await Promise.race([stage.run(tx, both), timeout]);
  } finally {
    timer.abort();
  }
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
