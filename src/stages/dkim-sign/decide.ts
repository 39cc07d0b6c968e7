/**
 * Whether and with which keys a message is signed: its author (the single From field, or
 * the envelope sender with dkimSign.envelopeSenderFallback), the signing table rule for the
 * author domain, the rule's active keys, and the signature options for the author. The
 * dkim-sign stage acts on it; `postseal explain` prints it, so the two cannot disagree.
 */
import type { DkimSignSettings } from './schema';
import type { KeyStore, SigningKey, SigningRule } from '../../keys/key-store';
import { authorOf, splitAddress, type Author } from '../../lib/author';
import type { Finding } from '../../pipeline/stage';
import type { Message } from '../../transaction/message';
import { optionsFor, type SignatureOptions } from './options';

/** Why a message goes unsigned; the names appear in findings and in `postseal explain`. */
export type UnsignedReason = 'no_from' | 'multiple_from' | 'no_author_domain' | 'no_key_for_domain' | 'no_active_key';

export type SigningDecision =
  | {
      readonly sign: true;
      /** Whose domain chose the rule: the author, or the envelope sender as the fallback. */
      readonly signer: Author;
      readonly author: Author | null;
      readonly rule: SigningRule;
      readonly keys: readonly SigningKey[];
      readonly options: SignatureOptions;
    }
  | { readonly sign: false; readonly reason: UnsignedReason; readonly finding: Finding; readonly signer?: Author; readonly author?: Author | null; readonly rule?: SigningRule };

export function decideSigning(message: Message, mailFrom: string, conf: DkimSignSettings, store: KeyStore): SigningDecision {
  const froms = message.get('from');
  if (froms.length === 0) return unsigned('no_from', { code: 'DKIM_SIGN_NO_FROM' });
  if (froms.length > 1) return unsigned('multiple_from', { code: 'DKIM_SIGN_MULTIPLE_FROM', detail: `${froms.length} From fields` });
  const author = authorOf(froms[0]);
  const signer = author ?? (conf.envelopeSenderFallback ? splitAddress(mailFrom) : null);
  if (!signer) return unsigned('no_author_domain', { code: 'DKIM_SIGN_NO_AUTHOR_DOMAIN', detail: 'From holds no usable address' });
  const rule = store.ruleFor(signer.domain);
  if (!rule) return { ...unsigned('no_key_for_domain', { code: 'DKIM_SIGN_NO_KEY', detail: `no_key_for_domain ${signer.domain}` }), signer, author };
  if (rule.signing.length === 0) {
    // A rule whose keys are all staged (a domain being set up) or retiring: unsigned until one is activated.
    const states = rule.keys.map((k) => `s=${k.selector} ${k.state}`).join(', ');
    return { ...unsigned('no_active_key', { code: 'DKIM_SIGN_NO_KEY', detail: `no_active_key ${signer.domain} (${states})` }), signer, author, rule };
  }
  return { sign: true, signer, author, rule, keys: rule.signing, options: optionsFor(conf, signer) };
}

function unsigned(reason: UnsignedReason, finding: Finding): SigningDecision {
  return { sign: false, reason, finding };
}
