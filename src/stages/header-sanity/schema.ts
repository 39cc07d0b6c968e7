/**
 * The `headerSanity` section of a policy bank (stages/registry.ts adds it to the bank schema).
 */
import type { FromSchema } from 'json-schema-to-ts';
import { destinySchema, recipientListSchema } from '../../pipeline/destiny';

export const headerSanityBankSchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  description:
    'header-sanity stage: what to do with each kind of malformed header. pass = finding only, fix = repair the message, reject = the destiny (550 5.6.0 by default). It also removes the fields only postseal may write (removeOwnFields).',
  properties: {
    nul: { type: 'string', enum: ['pass', 'fix', 'reject'], default: 'fix', description: 'NUL bytes anywhere in the message; fix removes them.' },
    eightBitHeader: {
      type: 'string',
      enum: ['pass', 'fix', 'reject'],
      default: 'pass',
      description: '8-bit bytes in a header field of mail sent without SMTPUTF8; fix encodes the field body as RFC 2047 UTF-8 words.',
    },
    longLine: {
      type: 'string',
      enum: ['pass', 'fix', 'reject'],
      default: 'pass',
      description: 'Lines over 998 octets (RFC 5322 2.1.1); fix folds over-long header lines at white space. Long body lines are left to the seven-bit stage.',
    },
    missingFrom: { type: 'string', enum: ['pass', 'reject'], default: 'pass', description: 'No From: field.' },
    multipleFrom: {
      type: 'string',
      enum: ['pass', 'reject'],
      default: 'reject',
      description: 'More than one From: field (RFC 5322 3.6 allows one): reject = 550 5.6.0, as readers and DMARC checkers disagree on which one counts.',
    },
    destiny: destinySchema(
      'reject',
      'mail with a malformed header of a kind set to reject (550 5.6.0 naming the kind when rejected; X-Postseal-Alert: BAD HEADER SECTION when passed)',
    ),
    removeOwnFields: {
      type: 'boolean',
      default: true,
      description:
        'Remove every X-Postseal-Alert and X-Postseal-Quarantine field the message arrived with, and each X-Virus-Scanned whose value is the one this bank writes (virus.scannedHeaderValue, or "postseal at <authservId>"), so that none a sender wrote passes for ours (finding HEADER_SANITY_OWN_FIELDS_REMOVED). X-Virus-Scanned fields of other hosts stay.',
    },
    lovers: {
      ...recipientListSchema,
      description: `Bad-header lovers (amavisd @bad_header_lovers_maps): when every recipient is one, a kind set to reject is delivered instead, with X-Postseal-Alert naming what was wrong (fixes still apply). ${recipientListSchema.description}`,
    },
    bypass: {
      ...recipientListSchema,
      description: `Recipients whose mail is not checked at all (amavisd @bypass_header_checks_maps), when every recipient is one: no finding but HEADER_SANITY_BYPASSED, no fix. ${recipientListSchema.description}`,
    },
  },
} as const;

export type HeaderSanitySettings = FromSchema<typeof headerSanityBankSchema>;
