/**
 * The `dmarc` section of a policy bank (stages/registry.ts adds it to the bank schema).
 */
import type { FromSchema } from 'json-schema-to-ts';

export const dmarcBankSchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  description: 'dmarc stage: DMARC (RFC 7489, DMARCbis tree walk) of the From domain against the SPF and DKIM results, and what this bank does with its policy.',
  properties: {
    onReject: {
      type: 'string',
      enum: ['reject', 'quarantine', 'header', 'tag'],
      default: 'reject',
      description:
        'Mail failing DMARC of a domain whose policy is p=reject: reject = 550 5.7.1 naming the policy; quarantine = held in the quarantine folder (main config quarantine), not delivered; header = delivered with X-Postseal-Quarantine, for Postfix header_checks to HOLD (what quarantine meant before postseal had a quarantine); tag = Authentication-Results only.',
    },
    onQuarantine: {
      type: 'string',
      enum: ['quarantine', 'header', 'tag'],
      default: 'tag',
      description:
        'Mail failing DMARC of a domain whose policy is p=quarantine: quarantine = held in the quarantine folder, not delivered; header = delivered with X-Postseal-Quarantine (for Postfix header_checks HOLD; what quarantine meant before postseal had a quarantine); tag = Authentication-Results only (a Sieve rule can file it as junk).',
    },
    onTempError: {
      type: 'string',
      enum: ['tempfail', 'tag'],
      default: 'tempfail',
      description:
        'DMARC could not decide because a DNS lookup failed, for a domain whose policy is quarantine or reject: tempfail = 451 4.7.0 (Postfix retries); tag = deliver with dmarc=temperror.',
    },
  },
} as const;

export type DmarcSettings = FromSchema<typeof dmarcBankSchema>;
