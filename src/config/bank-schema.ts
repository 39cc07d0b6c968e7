/**
 * JSON Schema of a policy bank: the only source of the bank's TypeScript type.
 *
 * A bank file in policy-banks/ is an overlay on `default`; the merged result is validated
 * against this schema (ajv fills the defaults) and frozen. Every field has a default and a
 * description, so `postseal config print BANK` and docs/config.md explain every knob.
 */
import type { FromSchema } from 'json-schema-to-ts';
import { arcSealBankSchema } from '../stages/arc-seal/schema';
import { dkimSignBankSchema } from '../stages/dkim-sign/schema';
import { dkimVerifyBankSchema } from '../stages/dkim-verify/schema';
import { dmarcBankSchema } from '../stages/dmarc/schema';
import { sevenBitBankSchema } from '../stages/seven-bit/schema';

const target = {
  type: 'object',
  additionalProperties: false,
  description: 'An SMTP or LMTP server that postseal hands mail to.',
  required: ['host', 'port'],
  properties: {
    protocol: {
      type: 'string',
      enum: ['smtp', 'lmtp'],
      default: 'smtp',
      description: 'smtp for a Postfix reinjection smtpd; lmtp only behind an lmtp listener, so that every recipient gets its own reply.',
    },
    host: { type: 'string', minLength: 1, default: '127.0.0.1', description: 'Address of the downstream server.' },
    port: { type: 'integer', minimum: 1, maximum: 65535, default: 10025, description: 'Port of the downstream server.' },
    heloName: { type: 'string', default: '', description: 'Name sent with EHLO/LHLO; empty uses the host name.' },
    connectTimeoutMs: { type: 'integer', minimum: 100, maximum: 600000, default: 10000, description: 'Time to connect and read the greeting.' },
    commandTimeoutMs: { type: 'integer', minimum: 100, maximum: 600000, default: 60000, description: 'Time for the reply to one command (EHLO, XFORWARD, MAIL, RCPT, DATA).' },
    dataDoneTimeoutMs: { type: 'integer', minimum: 100, maximum: 3600000, default: 300000, description: 'Time for the reply to the end of the message data.' },
    maxIdleConnections: { type: 'integer', minimum: 0, maximum: 1000, default: 16, description: 'Connections kept open for reuse; 0 opens one per message.' },
    idleTimeoutMs: {
      type: 'integer',
      minimum: 100,
      maximum: 3600000,
      default: 30000,
      description: 'An unused connection is closed (QUIT) after this long; keep it below the downstream smtpd_timeout.',
    },
  },
} as const;

export const bankSchema = {
  $id: 'postseal:bank',
  type: 'object',
  additionalProperties: false,
  required: ['forward'],
  properties: {
    description: { type: 'string', default: '', description: 'Free text shown by `postseal config print`.' },
    originating: {
      type: 'boolean',
      default: false,
      description: 'Mail on this bank comes from our own users (amavisd $originating): it is made 7-bit and signed, not verified.',
    },
    forward: target,
    notify: {
      ...target,
      description:
        'Not used yet: the target for mail postseal will generate itself (notices, reports; see the README roadmap), the originating reinjection port so that it is signed. Validated, nothing is sent to it today.',
    },
    greetingBanner: { type: 'string', default: 'postseal content filter', description: 'Text after the 220 code and host name in the greeting.' },
    discardEhloKeywords: {
      type: 'array',
      uniqueItems: true,
      items: { type: 'string', enum: ['8BITMIME', 'SMTPUTF8', 'PIPELINING', 'DSN', 'SIZE'] },
      default: [],
      description: 'EHLO keywords this listener does not announce (amavisd @extra_ehlo_keywords inverse). 8BITMIME makes Postfix downgrade 8-bit mail before it reaches us.',
    },
    maxMessageSizeBytes: {
      type: 'integer',
      minimum: 1024,
      default: 104857600,
      description: 'Announced with SIZE and enforced while DATA streams in (552 5.3.4). Keep it at least Postfix message_size_limit.',
    },
    maxRecipients: {
      type: 'integer',
      minimum: 1,
      maximum: 100000,
      default: 1000,
      description: 'Recipients per message; more get 452 4.5.3 and Postfix sends them in a later transaction.',
    },
    timeouts: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'Time limits of one message on this bank.',
      properties: {
        messageDeadlineMs: {
          type: 'integer',
          minimum: 1000,
          maximum: 3600000,
          default: 480000,
          description:
            'From the end of DATA to the upstream reply: stages plus reinjection. Keep it below Postfix smtp_data_done_timeout (600s) so Postfix hears our 451, not a timeout.',
        },
        stageTimeoutMs: { type: 'integer', minimum: 100, maximum: 3600000, default: 60000, description: 'One stage that runs longer gives 451 4.3.0 (STAGE_TIMEOUT).' },
        socketIdleTimeoutMs: {
          type: 'integer',
          minimum: 1000,
          maximum: 3600000,
          default: 300000,
          description: 'An upstream client silent this long is disconnected (Postfix smtpd_timeout).',
        },
      },
    },
    stages: {
      type: 'array',
      uniqueItems: true,
      items: {
        type: 'string',
        enum: ['loop-guard', 'header-sanity', 'dkim-verify', 'spf', 'dmarc', 'arc-verify', 'authentication-results', 'seven-bit', 'dkim-sign', 'arc-seal'],
      },
      default: ['loop-guard', 'header-sanity'],
      description: 'The checks this bank runs; the runner orders them by what each declares it runs after.',
    },
    loopGuard: {
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
    },
    sevenBit: sevenBitBankSchema,
    dkimSign: dkimSignBankSchema,
    dkimVerify: dkimVerifyBankSchema,
    dmarc: dmarcBankSchema,
    arcSeal: arcSealBankSchema,
    headerSanity: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'header-sanity stage: what to do with each kind of malformed header. pass = finding only, fix = repair the message, reject = 550 5.6.0.',
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
      },
    },
  },
} as const;

export type Bank = FromSchema<typeof bankSchema>;
export type ForwardTarget = Bank['forward'];
export type StageId = Bank['stages'][number];
export type HeaderSanityAction = Bank['headerSanity']['nul'];
