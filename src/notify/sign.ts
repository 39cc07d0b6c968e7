/**
 * DKIM-signs mail postseal writes itself (RFC 6376): DMARC reports (for the domain of
 * `services.dmarcReports.from`), DSNs and notices (for the domain of main config
 * `notify.from`), with the active keys of the signing table for that domain
 * (keys/key-store.ts forAuthor), before it is handed to a bank's notify target: the shipped
 * notify path (Postfix's 10027 reinjection smtpd, no milters) comes after postseal's signing,
 * and receivers that check DMARC judge the From domain.
 *
 * Options are the dkim-sign stage's defaults (relaxed/relaxed, t=, the default h= list and
 * oversigned fields): this mail is ours and fixed in form, so a bank's per-sender options do
 * not apply. No key for the domain: the mail goes unsigned, and the caller logs it
 * (docs/dmarc-reports.md, docs/notifications.md).
 *
 * Fails: rejects with the crypto error; the DMARC report run counts it as a failed send and
 * retries, a notice or DSN is a 451 (NOTIFY_FAILED) and Postfix retries.
 */
import type { DkimSigningKey } from '../lib/dkim/sign';
import { signMessage } from '../lib/dkim/sign';
import { defaultSignedHeaderFields } from '../stages/dkim-sign/schema';
import { Message } from '../transaction/message';
import { memorySpool } from '../transaction/spool';

export type SignReport = (raw: Buffer) => Promise<Buffer>;

const options = {
  canonicalization: 'relaxed/relaxed',
  ttlSeconds: 0,
  timestamp: true,
  identity: 'none',
  bodyLength: false,
  signedHeaderFields: defaultSignedHeaderFields,
  oversignedHeaderFields: ['from', 'to', 'cc', 'subject', 'reply-to', 'date'],
} as const;

/** A signer with these keys, or undefined when there are none (the mail goes unsigned). */
export function reportSigner(keys: readonly DkimSigningKey[], now: () => Date): SignReport | undefined {
  if (!keys.length) return undefined;
  return async (raw) => {
    const msg = Message.parse(memorySpool(raw));
    const signed = await signMessage(msg, keys, options, null, now(), AbortSignal.timeout(30000));
    return Buffer.concat([Buffer.from(signed.fields.join(''), 'latin1'), raw]);
  };
}
