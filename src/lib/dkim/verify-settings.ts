/**
 * The `dkimVerify` section of a policy bank: how DKIM signatures are verified, by the
 * dkim-verify stage and (its limits and l= rule) by arc-verify for the ARC-Message-Signature.
 */
import type { FromSchema } from 'json-schema-to-ts';

export const dkimVerifyBankSchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  description: 'dkim-verify stage: verifies every DKIM signature of inbound mail (RFC 6376, 8301, 8463) and records one result per signature.',
  properties: {
    maxSignatures: {
      type: 'integer',
      minimum: 1,
      maximum: 100,
      default: 10,
      description:
        'Signatures verified per message, top first; the rest are reported dkim=neutral (signature-limit) without a key lookup. arc-verify applies it too: an ARC chain whose seals plus its newest ARC-Message-Signature exceed it is arc=fail without a key lookup.',
    },
    minKeyBits: {
      type: 'integer',
      minimum: 1024,
      maximum: 16384,
      default: 1024,
      description: 'Shorter RSA keys give dkim=policy (weak-key), and arc=fail for an ARC key; RFC 8301 3.2 says 1024 at least.',
    },
    partialBody: {
      type: 'string',
      enum: ['pass', 'neutral'],
      default: 'neutral',
      description:
        'A valid l= signature on a body with unsigned text after its limit (a list footer, or an attacker who appended content): neutral, so that neither DMARC nor a signer bank trusts it, or pass.',
    },
    adsp: {
      type: 'boolean',
      default: false,
      description: 'Look up the author domain ADSP record (RFC 5617, historic) and report it as dkim-adsp= in Authentication-Results; never enforced.',
    },
    signerBanks: {
      type: 'array',
      default: [],
      description:
        'Signature-based policy (amavisd @author_to_policy_bank_maps): mail with a passing signature whose d= is `signer` and aligns with the author (From) domain continues on `bank` for the later stages and the verdict.',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['signer', 'bank'],
        properties: {
          signer: { type: 'string', minLength: 1, description: 'Signing domain (d=); the From domain must be it or below it.' },
          bank: { type: 'string', minLength: 1, description: 'Policy bank loaded for such mail (a file in bankDir).' },
        },
      },
    },
  },
} as const;

export type DkimVerifySettings = FromSchema<typeof dkimVerifyBankSchema>;
