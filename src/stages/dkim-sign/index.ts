/**
 * dkim-sign: adds a DKIM-Signature (RFC 6376; rsa-sha256 and ed25519-sha256, RFC 8463) for
 * every key the signing table gives for the author (From) domain, and a DomainKey-Signature
 * (RFC 4870) for keys that opt in. The last stage that changes bytes: the fields go on top,
 * nothing else is touched. Only banks with originating: true list it (config/load.ts).
 *
 * Findings: DKIM_SIGN_SIGNED; DKIM_SIGN_NO_FROM / DKIM_SIGN_MULTIPLE_FROM (unsignable,
 * dkimSign.unsignableFrom decides: reject 550 5.6.0 or pass unsigned);
 * DKIM_SIGN_NO_AUTHOR_DOMAIN and DKIM_SIGN_NO_KEY (no_key_for_domain: passes unsigned);
 * DKIM_SIGN_FAILED (a signing error: 451 4.7.5, never unsigned mail).
 * Reads: dkimSign.*, and the key store that main.ts loaded.
 */
import type { Bank } from '../../config/bank-schema';
import { authorOf, splitAddress } from '../../lib/author';
import type { Finding, Stage, StageDeps } from '../../pipeline/stage';
import type { HeaderField } from '../../transaction/message';
import { optionsFor } from './options';
import { signMessage } from './sign';

export function createDkimSignStage(bank: Bank, deps: StageDeps): Stage {
  const conf = bank.dkimSign;
  return {
    id: 'dkim-sign',
    after: ['loop-guard', 'header-sanity', 'dkim-verify', 'spf', 'dmarc', 'arc-verify', 'authentication-results', 'seven-bit'],
    async run(tx, signal) {
      const msg = tx.message;
      const froms = msg.get('from');
      if (froms.length === 0) return only({ code: 'DKIM_SIGN_NO_FROM' });
      if (froms.length > 1) return only({ code: 'DKIM_SIGN_MULTIPLE_FROM', detail: `${froms.length} From fields` });
      const author = authorOf(froms[0]);
      const signer = author ?? (conf.envelopeSenderFallback ? splitAddress(tx.envelope.mailFrom) : null);
      if (!signer) return only({ code: 'DKIM_SIGN_NO_AUTHOR_DOMAIN', detail: 'From holds no usable address' });
      const keys = deps.keys.forAuthor(signer.domain);
      if (keys.length === 0) return only({ code: 'DKIM_SIGN_NO_KEY', detail: `no_key_for_domain ${signer.domain}` });
      let signed;
      try {
        signed = await signMessage(msg, keys, optionsFor(conf, signer), author, tx.receivedAt, signal);
      } catch (err) {
        if (signal.aborted) throw err;
        deps.log.error({ err, tx: tx.id, domain: signer.domain }, 'signing failed');
        return only({ code: 'DKIM_SIGN_FAILED', detail: (err as Error).message });
      }
      const added: HeaderField[] = signed.fields.map((raw) => {
        const name = raw.slice(0, raw.indexOf(':'));
        return { name, key: name.toLowerCase(), raw: Buffer.from(raw, 'latin1') };
      });
      return { findings: [{ code: 'DKIM_SIGN_SIGNED', detail: signed.summary.join(', ') }], message: msg.withFields([...added, ...msg.fields]) };
    },
  };
}

function only(finding: Finding) {
  return { findings: [finding] };
}
