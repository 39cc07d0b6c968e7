/**
 * Builds a bank's pipeline at start-up from the stage definitions the bank lists (ordered by
 * phase, then by their `after` declarations, then as the bank lists them; a cycle or an
 * `after` on a later phase is refused with STAGE_ORDER_CYCLE), with each stage's verdict
 * rules bound to its settings. Per message it runs each stage under timeouts.stageTimeoutMs
 * and the message deadline, hands every stage the typed results of those before it
 * (lib/results.ts), and stops at the first final verdict. A stage that throws or times out
 * ends the run with a tempfail; its outcome, should it still arrive, is dropped and a spool
 * it wrote is disposed of. A stage may switch the run to another bank (signer-based policy):
 * that bank's stages not run yet follow, and its rules decide the verdict. Header fields a tag
 * verdict adds are put on the message last. Under a quarantine or bounce verdict the remaining
 * checks still run (one may reject), the edit, sign and seal stages do not: the message is
 * held, or its header returned, as received.
 */
import type { Bank, CommonBank } from '../config/bank-schema';
import { PostsealError } from '../errors';
import { ResultSet, type Results } from '../lib/results';
import type { Spool } from '../transaction/spool';
import type { Transaction } from '../transaction/transaction';
import { PHASES, type Finding, type Phase, type RegisteredStage, type Stage, type StageDefinition, type StageDeps, type StageOutcome } from './stage';
import { decide, delivers, isFinal, keepsAsReceived, type CompiledRules, type Verdict } from './verdict';

export interface PipelineResult {
  readonly verdict: Verdict;
  readonly findings: readonly Finding[];
  /** Milliseconds per stage id, in run order. */
  readonly timings: Readonly<Record<string, number>>;
  /** Spools that stages created; the caller disposes them with the original. */
  readonly spools: readonly Spool[];
  /** The bank whose rules decided (another than the listener's after a signer-based switch). */
  readonly bankName: string;
  /** What the stages handed on (lib/results.ts), for tools that print more than the verdict. */
  readonly results: Results;
}

export interface Pipeline {
  readonly bankName: string;
  readonly stageIds: readonly string[];
  readonly bank: CommonBank;
  run(tx: Transaction, signal: AbortSignal): Promise<PipelineResult>;
}

interface Built {
  readonly stage: Stage;
  readonly declared: ReadonlySet<string>;
  readonly phase: Phase;
}

/** `otherBank` finds the pipeline a stage may switch to (StageOutcome.bank). */
export function createPipeline(
  bankName: string,
  bank: Bank,
  registry: readonly RegisteredStage[],
  deps: StageDeps,
  otherBank: (name: string) => Pipeline | undefined = () => undefined,
): Pipeline {
  const defs = orderStages(bank.stages.map((id) => definitionOf(registry, id)));
  const built: Built[] = defs.map((d) => ({ stage: d.create(settingsOf(d, bank), bank, deps), declared: new Set(d.findings), phase: d.phase }));
  const rules = compileRules(defs, bank, deps.authservId);
  const self: Pipeline & { readonly built: readonly Built[]; readonly rules: CompiledRules } = {
    bankName,
    stageIds: defs.map((d) => d.id),
    bank,
    built,
    rules,
    async run(tx, signal) {
      const findings: Finding[] = [];
      const timings: Record<string, number> = {};
      const spools: Spool[] = [];
      const results = new ResultSet();
      let plan = self;
      const ran = new Set<string>();
      const finish = (verdict: Verdict): PipelineResult => {
        if (delivers(verdict.action) && verdict.fields.length) tx.message = tx.message.prepend(...verdict.fields);
        return { verdict, findings, timings, spools, bankName: plan.bankName, results };
      };
      for (let i = 0; i < plan.built.length; i++) {
        const { stage, declared, phase } = plan.built[i];
        if (ran.has(stage.id)) continue;
        // A held message is kept as received: nothing to edit or sign.
        if (phase !== 'check' && keepsAsReceived(decide(findings, plan.rules).action)) break;
        ran.add(stage.id);
        const started = performance.now();
        try {
          const outcome = await runOne(stage, tx, signal, plan.bank.timeouts.stageTimeoutMs, results);
          for (const f of outcome.findings) {
            if (!declared.has(f.code)) deps.log.warn({ stage: stage.id, finding: f.code }, 'stage reported a finding it does not declare');
            findings.push(f);
          }
          results.add(outcome.results);
          if (outcome.message && outcome.message !== tx.message) {
            if (outcome.message.spool !== tx.message.spool) spools.push(outcome.message.spool);
            // A rewrite whose header was not parsed whole would let later stages (dkim-sign) read fields as body.
            if (!outcome.message.headerComplete) throw new PostsealError('STAGE_FAILED', `stage ${stage.id} made a message whose header section was not parsed whole`);
            tx.message = outcome.message;
          }
          const next = outcome.bank === undefined ? undefined : (otherBank(outcome.bank) as typeof self | undefined);
          if (next) {
            // The new bank's stages that have not run yet, in its order, then its verdict.
            plan = next;
            i = -1;
          } else if (outcome.bank !== undefined) deps.log.warn({ stage: stage.id, bank: outcome.bank, tx: tx.id }, 'stage asked for an unknown bank');
        } catch (err) {
          timings[stage.id] = performance.now() - started;
          deps.log.warn({ err, stage: stage.id, tx: tx.id }, 'stage failed');
          return finish(decide(findings, plan.rules, err));
        }
        timings[stage.id] = Math.round((performance.now() - started) * 1000) / 1000;
        const verdict = decide(findings, plan.rules);
        if (isFinal(verdict)) return finish(verdict);
      }
      return finish(decide(findings, plan.rules));
    },
  };
  return self;
}

function definitionOf(registry: readonly RegisteredStage[], id: string): RegisteredStage {
  const def = registry.find((d) => d.id === id);
  // The bank schema only lets registered ids through; this is for banks made without it.
  if (!def) throw new PostsealError('CFG_INCONSISTENT', `stage "${id}" is not registered (src/stages/registry.ts)`);
  return def;
}

/** A stage's own settings section of the bank, as its type (the composed bank schema validated it). */
export function settingsOf<S>(def: StageDefinition<S>, bank: Bank): S {
  return (def.settings ? bank[def.settings.key] : undefined) as S;
}

/** Each finding code's rule, bound to its stage's settings and the bank. */
export function compileRules(defs: readonly RegisteredStage[], bank: Bank, authservId: string): CompiledRules {
  const compiled = new Map<string, (f: Finding) => ReturnType<NonNullable<StageDefinition['rules']>[string]>>();
  for (const def of defs) {
    const settings = settingsOf(def, bank);
    for (const [code, rule] of Object.entries(def.rules ?? {})) compiled.set(code, (f) => rule(settings, bank, f, { authservId }));
  }
  return compiled;
}

/**
 * The reason a settled stage's signal is aborted with. Built once: abort() without a reason
 * makes a DOMException, and its stack trace cost several per cent of a message's CPU time
 * when it was made for every stage of every message (bench/README.md, profile).
 */
const STAGE_SETTLED = new Error('stage settled; its signal only stops work it left behind');

async function runOne(stage: Stage, tx: Transaction, signal: AbortSignal, timeoutMs: number, results: ResultSet) {
  if (signal.aborted) throw new PostsealError('DEADLINE_EXCEEDED', `message deadline passed before stage ${stage.id}`);
  const stageSignal = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let onDeadline: () => void = () => undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new PostsealError('STAGE_TIMEOUT', `stage ${stage.id} ran longer than ${timeoutMs} ms`)), timeoutMs);
    onDeadline = () => reject(new PostsealError('DEADLINE_EXCEEDED', `message deadline passed in stage ${stage.id}`));
    signal.addEventListener('abort', onDeadline, { once: true });
  });
  const running = stage.run(tx, stageSignal.signal, results);
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

/**
 * Phase by phase (check, edit, sign, seal); within a phase Kahn's algorithm over the declared
 * `after` edges, bank order as the tie-break. An `after` that names a stage of a later phase
 * can never hold, and is refused like a cycle.
 */
export function orderStages(defs: readonly RegisteredStage[]): RegisteredStage[] {
  const phaseOf = new Map(defs.map((d) => [d.id, PHASES.indexOf(d.phase)]));
  for (const d of defs) {
    const late = (d.after ?? []).filter((a) => (phaseOf.get(a) ?? -1) > PHASES.indexOf(d.phase));
    if (late.length) throw new PostsealError('STAGE_ORDER_CYCLE', `stage ${d.id} (phase ${d.phase}) asks to run after ${late.join(', ')}, of a later phase`);
  }
  const ordered: RegisteredStage[] = [];
  for (const phase of PHASES) {
    const stages = defs.filter((d) => d.phase === phase);
    const present = new Set(stages.map((s) => s.id));
    const done = new Set<string>();
    while (done.size < stages.length) {
      const next = stages.find((s) => !done.has(s.id) && (s.after ?? []).every((a) => done.has(a) || !present.has(a)));
      if (!next) {
        const left = stages.filter((s) => !done.has(s.id)).map((s) => s.id);
        throw new PostsealError('STAGE_ORDER_CYCLE', `stages ${left.join(', ')} wait for each other (their "after" lists form a cycle)`);
      }
      ordered.push(next);
      done.add(next.id);
    }
  }
  return ordered;
}
