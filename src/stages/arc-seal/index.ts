/**
 * arc-seal: adds an ARC set (RFC 8617 5.1) to mail this bank forwards onwards: the
 * ARC-Authentication-Results copy our results, the ARC-Message-Signature signs the message
 * as it leaves, the ARC-Seal signs the chain with cv= from arc-verify. A failed chain is
 * sealed with cv=fail, never as valid; a chain whose newest seal already says cv=fail is not
 * sealed again (5.1.2). Earlier ARC sets are left byte for byte. It runs after dkim-sign
 * (the AMS covers DKIM-Signature); nothing may change the message after it.
 *
 * mailauth's createSeal does the signing: it has no resolver and verifies nothing (no
 * DKIM-Signature, no seal; cv= is arc-verify's), reads the message once for one body hash
 * and signs twice; the chain it seals is bounded by arc-verify's 50-set limit and its own
 * (it refuses a 51st set). Measured on 1,000 DKIM-Signatures: no DNS query, 65-80 ms CPU
 * (test/stages/arc-seal.test.ts), linear in the header size. The stage's AbortSignal: an
 * aborted stage rejects before sealing and after it (no set is added), and the abort
 * destroys the input stream, which stops a read that waits on the spool file.
 *
 * Findings: ARC_SEAL_SEALED (detail "i=N cv=..."), ARC_SEAL_SKIPPED (detail: why).
 * Reads: arcSeal.domain, .selector, .keyFile; needs arc-verify in the same bank.
 */
import { createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { addAbortSignal, Readable } from 'node:stream';
import type * as MailauthArc from 'mailauth/lib/arc';
import { PostsealError } from '../../errors';
import { authOutcomes, formatAuthResults, resinfos } from '../../lib/authentication-results';
import { defineStage } from '../../pipeline/stage';
import { arcSealBankSchema, type ArcSealSettings } from './schema';

const FINDINGS = ['ARC_SEAL_SEALED', 'ARC_SEAL_SKIPPED'] as const;

export const arcSealStage = defineStage<ArcSealSettings, (typeof FINDINGS)[number]>({
  id: 'arc-seal',
  phase: 'seal',
  settings: { key: 'arcSeal', schema: arcSealBankSchema },
  findings: FINDINGS,
  check({ domain, selector, keyFile }, bank, where) {
    if (!domain || !selector || !keyFile) throw new PostsealError('CFG_INCONSISTENT', `${where}: /arcSeal: arc-seal needs domain, selector and keyFile`);
    if (!bank.stages.includes('arc-verify')) throw new PostsealError('CFG_INCONSISTENT', `${where}: /stages: arc-seal needs arc-verify in the same bank (cv= comes from it)`);
  },
  create({ domain, selector, keyFile }, _bank, deps) {
    let privateKey: Buffer;
    try {
      privateKey = readFileSync(keyFile);
    } catch (err) {
      throw new PostsealError('CFG_FILE_UNREADABLE', `bank ${deps.bankName}: /arcSeal/keyFile: cannot read ${keyFile}: ${(err as Error).message}`, { cause: err });
    }
    // A key that cannot sign would otherwise skip the seal on every message; refused at start instead.
    try {
      createPrivateKey(privateKey);
    } catch (err) {
      throw new PostsealError('CFG_INCONSISTENT', `bank ${deps.bankName}: /arcSeal/keyFile: ${keyFile} is not a private key in PEM: ${(err as Error).message}`, { cause: err });
    }
    return {
      id: 'arc-seal',
      async run(tx, signal, results) {
        signal.throwIfAborted();
        const o = authOutcomes(results);
        const cv = o.arc?.result ?? 'none';
        const authResults = formatAuthResults(deps.authservId, resinfos(o));
        // An aborted signal destroys the input, which rejects createSeal: nothing more is read or signed.
        const input = addAbortSignal(signal, Readable.from(tx.message.openRaw(), { objectMode: false }));
        // mailauth is loaded on first use (about 30 MB; a cluster's primary never needs it).
        const { createSeal } = require('mailauth/lib/arc') as typeof MailauthArc;
        const { headers, errors } = await createSeal(input, { seal: { signingDomain: domain, selector, privateKey, cv, authResults } });
        signal.throwIfAborted();
        if (!headers.length) {
          // Only a chain already at 50 sets or a signing error gets here: passed on unsealed, said in the log.
          const why = errors.map((e) => e.err?.message ?? String(e)).join('; ') || 'not sealed';
          deps.log.warn({ tx: tx.id, domain, reason: why }, 'ARC seal not added');
          return { findings: [{ code: 'ARC_SEAL_SKIPPED', detail: why }] };
        }
        const fields = headers.map((h) => {
          const text = h.replace(/\r?\n$/, '');
          const colon = text.indexOf(':');
          return {
            name: text.slice(0, colon),
            value: text
              .slice(colon + 1)
              .replace(/^ /, '')
              .replace(/\r?\n/g, '\r\n'),
          };
        });
        const instance = /\bi=(\d+)/.exec(fields[0].value)?.[1];
        return { findings: [{ code: 'ARC_SEAL_SEALED', detail: `i=${instance} cv=${cv}` }], message: tx.message.prepend(...fields) };
      },
    };
  },
});
