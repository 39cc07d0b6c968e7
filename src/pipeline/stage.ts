/**
 * The one interface every check implements (STYLE.md §2-3). A stage reads the transaction
 * and returns findings, plus a new Message when it edits headers or rewrites the message.
 * No stage writes an SMTP reply: pipeline/verdict.ts decides from the findings.
 */
import type { Logger } from 'pino';
import type { Bank, StageId } from '../config/bank-schema';
import type { KeyStore } from '../keys/key-store';
import type { AuthDeps } from '../lib/authentication-results';
import type { Message } from '../transaction/message';
import type { SpoolOptions } from '../transaction/spool';
import type { Transaction } from '../transaction/transaction';
import type { FindingCode } from './findings';

export interface Finding {
  readonly code: FindingCode;
  /** What was seen, for the log line (never key material). */
  readonly detail?: string;
}

export interface StageOutcome {
  readonly findings: readonly Finding[];
  /** The edited or rewritten message; later stages and the reinjection see this one. */
  readonly message?: Message;
  /** Continue on this policy bank: its stages not run yet, and its verdict (signer-based policy). */
  readonly bank?: string;
}

export interface Stage {
  readonly id: StageId;
  /** Stages that must run before this one when the bank lists them. */
  readonly after?: readonly StageId[];
  run(tx: Readonly<Transaction>, signal: AbortSignal): Promise<StageOutcome>;
}

/** What main.ts hands every stage factory. */
export interface StageDeps {
  readonly hostname: string;
  readonly authservId: string;
  readonly bankName: string;
  readonly log: Logger;
  /** For stages that rewrite a message into a new spool. */
  readonly spool: Omit<SpoolOptions, 'maxSizeBytes'>;
  /** DKIM signing keys, parsed at start-up or reload. */
  readonly keys: KeyStore;
  /** The resolver, per-transaction results and DMARC store of the authentication checks. */
  readonly auth: AuthDeps;
}

export type StageFactory = (bank: Bank, deps: StageDeps) => Stage;
