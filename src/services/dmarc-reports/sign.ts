/**
 * DKIM-signs report mail (RFC 6376) with the active keys of the signing table for the domain
 * of `services.dmarcReports.from` (keys/key-store.ts forAuthor), before it is handed to the
 * notify target: the shipped notify path (Postfix's 10027 reinjection smtpd, no milters) does
 * not sign, and report receivers that check DMARC judge the report's From domain.
 *
 * Options are the dkim-sign stage's defaults (relaxed/relaxed, t=, the default h= list and
 * oversigned fields): report mail is ours and fixed in form, so a bank's per-sender options
 * do not apply. No key for the domain: the report goes unsigned (docs/dmarc-reports.md).
 *
 * Fails: rejects with the crypto error; run.ts counts it as a failed send and retries.
 */
import type { DkimSigningKey } from '../../lib/dkim/sign';
import { signMessage } from '../../lib/dkim/sign';
import { defaultSignedHeaderFields } from '../../stages/dkim-sign/schema';
import { Message } from '../../transaction/message';
import { memorySpool } from '../../transaction/spool';

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

/** A signer with these keys, or undefined when there are none (the report goes unsigned). */
export function reportSigner(keys: readonly DkimSigningKey[], now: () => Date): SignReport | undefined {
  if (!keys.length) return undefined;
  return async (raw) => {
    const msg = Message.parse(memorySpool(raw));
    const signed = await signMessage(msg, keys, options, null, now(), AbortSignal.timeout(30000));
    return Buffer.concat([Buffer.from(signed.fields.join(''), 'latin1'), raw]);
  };
}
