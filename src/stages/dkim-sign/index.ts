/**
 * dkim-sign: adds a DKIM-Signature (RFC 6376; rsa-sha256 and ed25519-sha256, RFC 8463) for
 * every key the signing table gives for the author (From) domain, and a DomainKey-Signature
 * (RFC 4870) for keys that opt in. The last stage that changes bytes: the fields go on top,
 * nothing else is touched. Only banks with originating: true may list it (check.ts).
 *
 * Findings: DKIM_SIGN_SIGNED; DKIM_SIGN_NO_FROM / DKIM_SIGN_MULTIPLE_FROM (unsignable,
 * dkimSign.unsignableFrom decides: reject 550 5.6.0 or pass unsigned);
 * DKIM_SIGN_NO_AUTHOR_DOMAIN and DKIM_SIGN_NO_KEY (no_key_for_domain, or no_active_key when
 * the rule's keys are staged or retiring: passes unsigned);
 * DKIM_SIGN_FAILED (a signing error: 451 4.7.5, never unsigned mail).
 * Reads: dkimSign.*, and the key store that main.ts loaded. What to sign with: decide.ts.
 */
import { type SignedFields, signMessage, withSignatures } from '../../lib/dkim/sign';
import { defineStage } from '../../pipeline/stage';
import { replies, withText } from '../../smtp/replies';
import { checkSigningBank } from './check';
import { decideSigning } from './decide';
import { dkimSignBankSchema, type DkimSignSettings } from './schema';

const FINDINGS = ['DKIM_SIGN_SIGNED', 'DKIM_SIGN_NO_FROM', 'DKIM_SIGN_MULTIPLE_FROM', 'DKIM_SIGN_NO_AUTHOR_DOMAIN', 'DKIM_SIGN_NO_KEY', 'DKIM_SIGN_FAILED'] as const;

/** The reply names why the message cannot be signed, so the sender's bounce says what to fix. */
const unsignable = (why: string) => (s: DkimSignSettings) =>
  s.unsignableFrom === 'reject' ? { action: 'reject' as const, reply: withText(replies.headerRejected, `${replies.headerRejected.text}: ${why}, cannot sign`) } : null;

export const dkimSignStage = defineStage<DkimSignSettings, (typeof FINDINGS)[number]>({
  id: 'dkim-sign',
  // After every check and edit: nothing changes the message after the signature (but a seal).
  phase: 'sign',
  settings: { key: 'dkimSign', schema: dkimSignBankSchema },
  findings: FINDINGS,
  rules: {
    DKIM_SIGN_NO_FROM: unsignable('no From field'),
    DKIM_SIGN_MULTIPLE_FROM: unsignable('several From fields'),
    // Never unsigned mail from a signing bank: Postfix retries and the log says why.
    DKIM_SIGN_FAILED: () => ({ action: 'tempfail', reply: replies.signingFailed }),
  },
  check: (conf, bank, where) => checkSigningBank(conf, bank, where),
  create: (conf, _bank, deps) => ({
    id: 'dkim-sign',
    async run(tx, signal) {
      const msg = tx.message;
      const decision = decideSigning(msg, tx.envelope.mailFrom, conf, deps.keys);
      if (!decision.sign) return { findings: [decision.finding] };
      let signed: SignedFields;
      try {
        signed = await signMessage(msg, decision.keys, decision.options, decision.author, tx.receivedAt, signal);
      } catch (err) {
        if (signal.aborted) throw err;
        deps.log.error({ err, tx: tx.id, domain: decision.signer.domain }, 'signing failed');
        return { findings: [{ code: 'DKIM_SIGN_FAILED', detail: (err as Error).message }] };
      }
      return { findings: [{ code: 'DKIM_SIGN_SIGNED', detail: signed.summary.join(', ') }], message: withSignatures(msg, signed) };
    },
  }),
});
