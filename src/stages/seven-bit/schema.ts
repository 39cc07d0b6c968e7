/**
 * The `sevenBit` section of a policy bank (merged into config/bank-schema.ts).
 */
export const sevenBitBankSchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  description: 'seven-bit stage: re-encodes 8-bit and binary MIME parts so that no later hop has to, which would break the signature.',
  properties: {
    signedEightBit: {
      type: 'string',
      enum: ['pass', 'tempfail'],
      default: 'pass',
      description: 'A multipart/signed part (S/MIME, PGP) with 8-bit content, which re-encoding would break: pass = sent on as is with a finding; tempfail = 451 4.6.3.',
    },
  },
} as const;
