/**
 * Hands one mail postseal wrote (a DMARC report, a notice) to a bank's `notify` target (the
 * originating reinjection port, so that Postfix delivers it) with the project's SMTP client
 * (reinject/downstream-transaction.ts over a DownstreamPool).
 *
 * Accepted means: MAIL, at least one RCPT and the end of DATA answered 2xx. Anything else is
 * a failure the caller retries later (it keeps the records); a 5xx is logged as permanent
 * but retried all the same, since the report is still owed once the postmaster fixes it.
 *
 * Fails: never throws; connection and protocol errors (REINJECT_*) come back as `reason`.
 */
import type { DownstreamPool } from '../reinject/pool';
import { DownstreamTransaction } from '../reinject/downstream-transaction';

export type SendResult = { ok: true; accepted: readonly string[] } | { ok: false; permanent: boolean; reason: string };
export type SendMail = (mailFrom: string, to: readonly string[], raw: Buffer) => Promise<SendResult>;

async function* once(raw: Buffer): AsyncIterable<Buffer> {
  yield raw;
}

export function poolSender(pool: DownstreamPool): SendMail {
  return async (mailFrom, to, raw) => {
    let tx: DownstreamTransaction | null = null;
    try {
      const begun = await DownstreamTransaction.begin(pool, { mailFrom, smtputf8: false }, null);
      if (!begun.tx) return { ok: false, permanent: begun.reply.code >= 500, reason: `MAIL FROM: ${begun.reply.code} ${begun.reply.text}` };
      tx = begun.tx;
      const accepted: string[] = [];
      let refusal = '';
      for (const address of to) {
        const r = await tx.rcpt({ address });
        if (r.code >= 200 && r.code < 300) accepted.push(address);
        else refusal = `RCPT TO:<${address}>: ${r.code} ${r.text}`;
      }
      if (!accepted.length) {
        tx.abort();
        return { ok: false, permanent: refusal.includes(': 5'), reason: refusal };
      }
      const done = await tx.data(once(raw));
      const reply = done.replies[0];
      if (done.failure) return { ok: false, permanent: false, reason: done.failure.message };
      if (!reply || reply.code < 200 || reply.code >= 300) return { ok: false, permanent: (reply?.code ?? 0) >= 500, reason: `DATA: ${reply?.code} ${reply?.text}` };
      return { ok: true, accepted };
    } catch (err) {
      tx?.cancel();
      return { ok: false, permanent: false, reason: (err as Error).message };
    }
  };
}
