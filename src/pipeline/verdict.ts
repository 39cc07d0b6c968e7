/**
 * The one place that decides what happens to the message (STYLE.md §3): the findings of the
 * stages that ran, read through the rules their stages declare (compiled per bank by the
 * runner), give pass, tag, quarantine, discard, bounce, reject or tempfail, with the reply from the
 * table and the finding that decided, for the log. The worst decision wins; tag delivers the
 * message with the header fields its rules add, quarantine holds it (src/quarantine/, not
 * delivered; the runner still runs the remaining checks, as one may reject). A stage failure is
 * always a tempfail (STYLE.md §5), its reply from smtp/error-replies.ts.
 */
import { isPostsealError } from '../errors';
import { replyForError } from '../smtp/error-replies';
import { replies, type SmtpReply } from '../smtp/replies';
import type { Action, Decision, Finding, NoticeCategory } from './stage';

export interface Verdict {
  readonly action: Action;
  readonly reply: SmtpReply;
  /** The finding or error that decided, for the log line. */
  readonly reason: string;
  /** Header fields to add for tag (and pass), in the order their findings came. */
  readonly fields: readonly { readonly name: string; readonly value: string }[];
  /** The content category of the deciding rule, for the notices (Decision.category). */
  readonly category?: NoticeCategory;
}

/** A bank's rules by finding code, each bound to its stage's settings. */
export type CompiledRules = ReadonlyMap<string, (finding: Finding) => Decision | null>;

/** Worst first: one tempfail among the findings outranks a reject (the mail may be fine). */
const rank: Record<Action, number> = { tempfail: 6, reject: 5, bounce: 4, discard: 3, quarantine: 2, tag: 1, pass: 0 };

export function decide(findings: readonly Finding[], rules: CompiledRules, failure?: unknown): Verdict {
  if (failure !== undefined) {
    return { action: 'tempfail', reply: replyForError(failure), reason: isPostsealError(failure) ? failure.code : 'STAGE_FAILED', fields: [] };
  }
  let verdict: Omit<Verdict, 'fields'> = { action: 'pass', reply: replies.accepted, reason: 'no_decisive_finding' };
  const fields: { name: string; value: string }[] = [];
  for (const f of findings) {
    const d = rules.get(f.code)?.(f);
    if (!d) continue;
    if (d.fields && d.action === 'tag') fields.push(...d.fields);
    if (rank[d.action] > rank[verdict.action]) verdict = { action: d.action, reply: d.reply ?? replies.accepted, reason: f.code, category: d.category };
  }
  return { ...verdict, fields: delivers(verdict.action) ? fields : [] };
}

/** Whether the message still goes downstream. */
export function delivers(action: Action): boolean {
  return action === 'pass' || action === 'tag';
}

/** Quarantine and bounce keep the message as received: the stages after the checks (edits, signing) are skipped. */
export function keepsAsReceived(action: Action): boolean {
  return action === 'quarantine' || action === 'bounce';
}

/**
 * The runner stops early once nothing later can change the outcome: after a reject, discard
 * or tempfail. A quarantine or bounce can still be outranked by a later check (a virus
 * rejected), so only the stages after the checks are skipped for them.
 */
export function isFinal(v: Verdict): boolean {
  return !delivers(v.action) && !keepsAsReceived(v.action);
}
