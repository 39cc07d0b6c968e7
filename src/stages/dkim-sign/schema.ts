/**
 * The `dkimSign` section of a policy bank (stages/registry.ts adds it to the bank schema): what to do
 * with mail that cannot be signed, and the signature options, by default and by sender
 * (amavisd @dkim_signature_options_bysender_maps). Which keys sign is not a bank setting:
 * the signing table chooses them by author domain (keys/schema.ts).
 */
import type { FromSchema } from 'json-schema-to-ts';

/** amavisd-new's signed_header_fields, without trace fields that change on the way. */
export const defaultSignedHeaderFields = [
  'from',
  'sender',
  'reply-to',
  'subject',
  'date',
  'message-id',
  'to',
  'cc',
  'in-reply-to',
  'references',
  'mime-version',
  'content-type',
  'content-transfer-encoding',
  'content-id',
  'content-description',
  'content-disposition',
  'content-language',
  'resent-date',
  'resent-from',
  'resent-sender',
  'resent-to',
  'resent-cc',
  'resent-message-id',
  'list-id',
  'list-help',
  'list-unsubscribe',
  'list-unsubscribe-post',
  'list-subscribe',
  'list-post',
  'list-owner',
  'list-archive',
  'auto-submitted',
  'precedence',
  'feedback-id',
  'autocrypt',
  'openpgp',
] as const;

const fieldNames = { type: 'array', uniqueItems: true, items: { type: 'string', pattern: "^[A-Za-z0-9!#$%&'*+^_`{|}~.-]+$" } } as const;

const optionFields = {
  canonicalization: {
    type: 'string',
    enum: ['relaxed/relaxed', 'relaxed/simple', 'simple/relaxed', 'simple/simple'],
    description: 'c=, header/body canonicalization (RFC 6376 3.4). relaxed survives refolding and trailing white space.',
  },
  ttlSeconds: { type: 'integer', minimum: 0, maximum: 315360000, description: 'Signature lifetime: x= is t= plus this (amavisd ttl); 0 leaves x= out.' },
  timestamp: { type: 'boolean', description: 't=, the signing time.' },
  identity: {
    type: 'string',
    enum: ['none', 'author'],
    description: 'i=: none, or the author (From) address when its domain is d= or below it.',
  },
  bodyLength: {
    type: 'boolean',
    description: 'l=, the signed body length: text a list appends afterwards does not break the signature, and can be anything (RFC 6376 8.2); off unless you must.',
  },
  signedHeaderFields: { ...fieldNames, minItems: 1, description: 'h=, the fields to sign (every instance present); From is required.' },
  oversignedHeaderFields: {
    ...fieldNames,
    description: 'Fields listed in h= once more than present, so that one added later (a second From or Subject) breaks the signature (RFC 6376 8.15).',
  },
} as const;

export const dkimSignBankSchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  description: 'dkim-sign stage: signs mail of banks with originating: true with every key the signing table gives for the author domain.',
  properties: {
    unsignableFrom: {
      type: 'string',
      enum: ['pass', 'reject'],
      default: 'pass',
      description: 'No From field, or several: DKIM cannot sign it (RFC 6376 5.4). reject = 550 5.6.0; pass = sent on unsigned with a finding.',
    },
    envelopeSenderFallback: {
      type: 'boolean',
      default: false,
      description: 'When the From field holds no usable address (a group, no domain), look up the envelope sender domain in the signing table instead.',
    },
    signature: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'Signature options for every sender that no bySender entry matches.',
      properties: {
        canonicalization: { ...optionFields.canonicalization, default: 'relaxed/relaxed' },
        ttlSeconds: { ...optionFields.ttlSeconds, default: 0 },
        timestamp: { ...optionFields.timestamp, default: true },
        identity: { ...optionFields.identity, default: 'none' },
        bodyLength: { ...optionFields.bodyLength, default: false },
        signedHeaderFields: { ...optionFields.signedHeaderFields, default: defaultSignedHeaderFields },
        oversignedHeaderFields: { ...optionFields.oversignedHeaderFields, default: ['from', 'to', 'cc', 'subject', 'reply-to', 'date'] },
      },
    },
    bySender: {
      type: 'array',
      default: [],
      description: 'Options by author address, first match wins; an entry overrides only the options it names (the rest come from signature).',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['senders'],
        properties: {
          senders: {
            type: 'array',
            minItems: 1,
            items: { type: 'string', pattern: '^([^@\\s]+@)?(\\*\\.)?[A-Za-z0-9.-]+$' },
            description: 'user@example.com (one address), example.com (the domain), *.example.com (its subdomains).',
          },
          ...optionFields,
        },
      },
    },
  },
} as const;

export type DkimSignSettings = FromSchema<typeof dkimSignBankSchema>;
