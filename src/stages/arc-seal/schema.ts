/**
 * The `arcSeal` section of a policy bank (stages/registry.ts adds it to the bank schema).
 */
import type { FromSchema } from 'json-schema-to-ts';
export const arcSealBankSchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  description: 'arc-seal stage (RFC 8617): adds an ARC set on banks that forward mail onwards (aliases, lists). Needs domain, selector and keyFile when listed.',
  properties: {
    domain: { type: 'string', default: '', description: 'd= of the ARC-Seal and ARC-Message-Signature.' },
    selector: { type: 'string', default: '', description: 's=; the public key is published at <selector>._domainkey.<domain>.' },
    keyFile: { type: 'string', default: '', description: 'PEM private key (RSA or Ed25519), an absolute path; read at start-up and on reload.' },
  },
} as const;

export type ArcSealSettings = FromSchema<typeof arcSealBankSchema>;
