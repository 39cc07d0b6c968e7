/**
 * What a stage is (STYLE.md §2-3, docs/architecture.md "Adding a stage"): its folder exports
 * one StageDefinition (id, phase, settings schema, findings, verdict rules, factory) and
 * src/stages/registry.ts lists it; the bank schema, the findings list, the verdict rules and
 * docs/config.md are derived from the definitions. A stage reads the transaction and the
 * results of the stages before it, and returns findings, typed results, and a new Message
 * when it edits the message. No stage writes an SMTP reply: its rules say what its findings
 * mean, and pipeline/verdict.ts decides once for the message.
 */
import type { Logger } from 'pino';
import type { CommonBank } from '../config/bank-schema';
import type { KeyStore } from '../keys/key-store';
import type { DkimKeyCache } from '../lib/dkim/public-keys';
import type { DmarcFailureSink } from '../lib/dmarc-report/failure';
import type { DnsResolver } from '../lib/dns';
import type { NoticeCategory } from '../lib/notice-templates';
import type { ResultEntry, Results } from '../lib/results';
import type { SmtpReply } from '../smtp/replies';
import type { DmarcResultStore } from '../store/dmarc-results';
import type { Message } from '../transaction/message';
import type { SpoolOptions } from '../transaction/spool';
import type { Transaction } from '../transaction/transaction';
import type { ExternalUnpacker } from '../lib/archive/external';
import type { ByteBudget } from '../lib/archive/memory';

/**
 * Stages run phase by phase, then in the order their `after` lists ask for, then in the order
 * the bank lists them: checks see the message as it arrived, edits change it, signing comes
 * after every change, and sealing (ARC) after signing. Nothing changes the message after them.
 */
export const PHASES = ['check', 'edit', 'sign', 'seal'] as const;
export type Phase = (typeof PHASES)[number];

export interface Finding {
  /** STAGE_WHAT, one of its stage's declared findings. */
  readonly code: string;
  /** What was seen, for the log line (never key material). */
  readonly detail?: string;
}

export interface StageOutcome {
  readonly findings: readonly Finding[];
  /** The edited or rewritten message; later stages and the reinjection see this one. */
  readonly message?: Message;
  /** Continue on this policy bank: its stages not run yet, and its verdict (signer-based policy). */
  readonly bank?: string;
  /** Typed results for later stages (lib/results.ts). */
  readonly results?: readonly ResultEntry[];
}

export interface Stage {
  readonly id: string;
  run(tx: Readonly<Transaction>, signal: AbortSignal, results: Results): Promise<StageOutcome>;
}

/** What every stage factory gets, built once per configuration (setup.ts buildStageDeps). */
export interface StageDeps {
  readonly hostname: string;
  readonly authservId: string;
  readonly bankName: string;
  readonly log: Logger;
  /** For stages that rewrite a message into a new spool. */
  readonly spool: Omit<SpoolOptions, 'maxSizeBytes'>;
  /** DKIM signing keys, parsed at start-up or reload. */
  readonly keys: KeyStore;
  readonly resolver: DnsResolver;
  /** DKIM public keys, parsed once per key record. */
  readonly dkimKeys: DkimKeyCache;
  readonly dmarcStore: DmarcResultStore;
  /** Where DMARC failure reports are queued; absent when they are off. */
  readonly dmarcFailures?: DmarcFailureSink;
  /** The process-wide memory budget for unpacking (banned stage); absent: no cap across messages. */
  readonly unpackMemory?: ByteBudget;
  /** lsar and unar for RAR, 7z, cab, xz, bzip2, ISO and BinHex (banned stage); absent: those are not unpacked. */
  readonly unpacker?: ExternalUnpacker;
}

/**
 * What the message gets; worst first in verdict.ts. tag delivers it with `fields` on top;
 * quarantine holds it (src/quarantine/); bounce drops it after a DSN to the sender
 * (src/notify/bounce.ts), its `reply` the refusal the DSN reports.
 */
export type Action = 'pass' | 'tag' | 'quarantine' | 'discard' | 'bounce' | 'reject' | 'tempfail';

/** The content category a rule's decision is for (src/notify/notices.ts). */
export type { NoticeCategory };

export interface Decision {
  readonly action: Action;
  /** The content category whose check decided, for the notices; none for other checks. */
  readonly category?: NoticeCategory;
  /** The reply for reject, tempfail and discard, and the refusal a bounce's DSN reports (from smtp/replies.ts). */
  readonly reply?: SmtpReply;
  /** Header fields a tag adds, written as given. */
  readonly fields?: readonly { readonly name: string; readonly value: string }[];
}

export interface RuleContext {
  readonly authservId: string;
}

/** What one finding of a stage means for the message, given the stage's settings; null: nothing. */
export type Rule<S> = (settings: S, bank: CommonBank, finding: Finding, ctx: RuleContext) => Decision | null;

export interface StageDefinition<S = unknown> {
  /** Stable kebab-case id, as banks list it. */
  readonly id: string;
  readonly phase: Phase;
  /** Stages of the same phase that must run before this one when the bank lists them. */
  readonly after?: readonly string[];
  /** The bank key of its settings and their JSON Schema (defaults and descriptions on every field). */
  readonly settings?: { readonly key: string; readonly schema: object };
  /** Every finding code it reports. */
  readonly findings: readonly string[];
  /** What the verdict does with its findings; a finding without a rule decides nothing. */
  readonly rules?: Readonly<Record<string, Rule<S>>>;
  /** Cross-checks of a bank that lists it, at load; throws a CFG_* error naming `where`. */
  check?(settings: S, bank: CommonBank, where: string): void;
  create(settings: S, bank: CommonBank, deps: StageDeps): Stage;
}

/**
 * Any stage's definition, whatever its settings type: what the registry lists and the runner
 * builds from (a definition for settings S is one of these, as S only appears as an input).
 */
export type RegisteredStage = StageDefinition<never>;

/**
 * Types a definition against its settings S and finding codes F: a rule for a finding the
 * stage does not declare is a compile error.
 */
export function defineStage<S, F extends string>(
  def: Omit<StageDefinition<S>, 'findings' | 'rules'> & { readonly findings: readonly F[]; readonly rules?: Partial<Record<F, Rule<S>>> },
): StageDefinition<S> {
  return def as StageDefinition<S>;
}
