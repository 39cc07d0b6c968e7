/**
 * The `sevenBit` section of a policy bank (stages/registry.ts adds it to the bank schema).
 */
import type { FromSchema } from 'json-schema-to-ts';
import { MAX_MIME_DEPTH } from '../../lib/mime/structure';

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
    maxMimeDepth: {
      type: 'integer',
      minimum: 1,
      maximum: 1000,
      default: MAX_MIME_DEPTH,
      description:
        'How deep multiparts and message/rfc822 parts inside each other are walked (the message is depth 0). A multipart or message/rfc822 at this depth is not walked into and never changed, not even relabelled; with 8-bit content or an 8bit/binary label it gets a SEVEN_BIT_UNCONVERTIBLE finding (MIME nesting deeper than this).',
    },
  },
} as const;

export type SevenBitSettings = FromSchema<typeof sevenBitBankSchema>;
