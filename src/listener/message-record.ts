/**
 * The one log line per message (STYLE.md §12) and its telemetry, as both front ends write them:
 * the content filter (deliver.ts) and the milter (milter/end-of-message.ts). The line is built
 * up in a plain record while the message goes through; `recordResult` adds what the pipeline
 * decided, `logSpoolFailure` says what the postmaster has to fix when the spool cannot be
 * written, and `finishMessage` removes the spool files, writes the line and reports.
 */
import { isPostsealError } from '../errors';
import type { MessageReport, Telemetry } from '../lib/telemetry';
import type { PipelineResult } from '../pipeline/runner';
import type { Spool } from '../transaction/spool';
import type { SessionContext } from './session';

export type MessageRecord = Record<string, unknown>;

/** The pipeline's findings, timings and verdict, on the log line. */
export function recordResult(record: MessageRecord, result: PipelineResult): void {
  Object.assign(record, {
    findings: result.findings.map((f) => (f.detail ? `${f.code}(${f.detail})` : f.code)),
    timings: result.timings,
    verdict: result.verdict.action,
    reason: result.verdict.reason,
  });
}

/**
 * A spool that cannot be written is not the sender's fault and not transient by itself: the
 * postmaster has to act, and the line says where and what to check.
 */
export function logSpoolFailure(ctx: SessionContext, err: unknown, where: { session: string; queueId?: string }): void {
  if (!isPostsealError(err, 'SPOOL_FAILED') && !isPostsealError(err, 'SPOOL_FULL')) return;
  const errno = (err.cause as NodeJS.ErrnoException | undefined)?.code;
  const fix = err.code === 'SPOOL_FULL' ? 'its file system is full: free space there' : 'check that it exists, is writable by postseal and has free space';
  ctx.log.error({ ...where, spoolDir: ctx.spool.dir, errno, code: err.code }, `cannot write the message to the spool folder ${ctx.spool.dir} (${errno ?? 'error'}); ${fix}`);
}

export interface Finished {
  readonly record: MessageRecord;
  readonly spools: readonly Spool[];
  readonly bankName: string;
  readonly result: PipelineResult | undefined;
  readonly replyText: string;
  readonly replyClass: MessageReport['replyClass'];
  /** When the message began, for the log line's durationMs. */
  readonly started: number;
  /** When the telemetry's duration begins (the content filter counts from the spooled message). */
  readonly measuredFrom: number;
}

/** Removes the message's spool files, writes its log line and reports it; never throws. */
export async function finishMessage(ctx: SessionContext, telemetry: Telemetry, f: Finished): Promise<void> {
  await Promise.all(f.spools.map((s) => s.dispose().catch((e) => ctx.log.error({ err: e }, 'spool file not removed'))));
  f.record.reply = f.replyText;
  const ended = performance.now();
  f.record.durationMs = Math.round(ended - f.started);
  ctx.log.info(f.record, 'message');
  telemetry.inFlight(-1);
  telemetry.messageDone({
    bank: f.bankName,
    verdict: f.result?.verdict.action ?? 'none',
    replyClass: f.replyClass,
    durationMs: ended - f.measuredFrom,
    sizeBytes: f.record.size as number | undefined,
    timings: f.result?.timings ?? {},
    findings: f.result?.findings ?? [],
  });
}
