/**
 * Releases a held message: sends it, byte for byte as received, with its original envelope
 * (MAIL FROM with BODY, SMTPUTF8, RET and ENVID, each RCPT with NOTIFY and ORCPT, all as
 * Postfix wrote them) and XFORWARD of the original client, to the forward target of the bank
 * it arrived on. That target is Postfix's reinjection smtpd, which has no content_filter: the
 * message is not filtered again, so the checks that held it are skipped for this release
 * only (docs/quarantine.md; the same holds for signing: a released outbound message is not
 * signed). `to` sends it to that one address instead (no NOTIFY/ORCPT: they were the original
 * recipients').
 *
 * The release is recorded with the held message (its time, the recipients the downstream
 * accepted and its reply) once the downstream accepted the end of data; a refused recipient
 * or a failed DATA is reported, never retried here.
 *
 * Fails: never throws for downstream trouble (REINJECT_* come back as `reply`); throws
 * QUARANTINE_FAILED when the release cannot be recorded.
 */
import type { ForwardTarget } from '../config/bank-schema';
import type { Logger } from '../lib/log';
import { DownstreamTransaction } from '../reinject/downstream-transaction';
import { DownstreamPool } from '../reinject/pool';
import type { DownstreamReply } from '../reinject/smtp-client';
import type { Recipient } from '../transaction/transaction';
import type { HeldEntry, Quarantine } from './quarantine';

export interface ReleaseResult {
  /** Every recipient accepted and the message accepted at the end of data. */
  readonly ok: boolean;
  readonly accepted: readonly string[];
  readonly refused: readonly { readonly address: string; readonly reply: string }[];
  /** The downstream's end-of-data reply, or why the release did not get that far. */
  readonly reply: string;
}

const show = (r: DownstreamReply) => `${r.code}${r.enhanced ? ` ${r.enhanced}` : ''} ${r.text}`;
const isOk = (r: DownstreamReply) => r.code >= 200 && r.code < 300;

export async function releaseHeld(
  quarantine: Quarantine,
  held: HeldEntry,
  target: ForwardTarget,
  opts: { heloName: string; log: Logger; to?: string; now?: () => Date },
): Promise<ReleaseResult> {
  const { recipients, ...mail } = held.envelope;
  const rcpts: readonly Recipient[] = opts.to === undefined ? recipients : [{ address: opts.to }];
  const pool = new DownstreamPool(target, opts.heloName, opts.log);
  const fail = (reply: string, accepted: string[] = [], refused: ReleaseResult['refused'] = []): ReleaseResult => ({ ok: false, accepted, refused, reply });
  try {
    let tx: DownstreamTransaction | null;
    try {
      const begun = await DownstreamTransaction.begin(pool, mail, held.client);
      if (!begun.tx) return fail(`MAIL FROM: ${show(begun.reply)}`);
      tx = begun.tx;
    } catch (err) {
      return fail((err as Error).message);
    }
    const accepted: string[] = [];
    const refused: { address: string; reply: string }[] = [];
    let reply: string;
    try {
      for (const r of rcpts) {
        const answer = await tx.rcpt(r);
        if (isOk(answer)) accepted.push(r.address);
        else refused.push({ address: r.address, reply: show(answer) });
      }
      if (!accepted.length) {
        tx.abort();
        return fail('no recipient accepted', [], refused);
      }
      const done = await tx.data(quarantine.openRaw(held.id));
      const bad = done.replies.find((r) => !isOk(r));
      if (done.failure || bad || done.replies.length === 0) return fail(done.failure?.message ?? (bad ? `DATA: ${show(bad)}` : 'DATA: no reply'), [], refused);
      reply = show(done.replies[0]);
    } catch (err) {
      // A connection error or timeout (REINJECT_*), or the .eml unreadable: nothing was accepted.
      tx.cancel();
      return fail((err as Error).message, [], refused);
    }
    // Delivered: a failure to record it is the caller's to report (the message must not be released again blindly).
    await quarantine.recordRelease(held.id, { at: (opts.now?.() ?? new Date()).toISOString(), to: accepted, reply });
    return { ok: refused.length === 0, accepted, refused, reply };
  } finally {
    await pool.close();
  }
}
