/**
 * The `loopGuard` section of a policy bank (stages/registry.ts adds it to the bank schema).
 */
import type { FromSchema } from 'json-schema-to-ts';

export const loopGuardBankSchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  description: 'loop-guard stage: stops mail that circles between Postfix and postseal.',
  properties: {
    maxReceived: { type: 'integer', minimum: 1, maximum: 1000, default: 50, description: 'More Received: fields than this: 554 5.4.6 (Postfix hopcount_limit is 50).' },
    traceHeader: {
      type: 'boolean',
      default: true,
      description: 'Add "X-Postseal-Trace: <authservId> <bank>"; the same trace arriving again on the same bank is a loop (554 5.4.6).',
    },
  },
} as const;

export type LoopGuardSettings = FromSchema<typeof loopGuardBankSchema>;
