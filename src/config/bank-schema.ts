/**
 * JSON Schema of a policy bank's common keys (forward targets, EHLO, limits, timeouts, the
 * stage list): the only source of the CommonBank type that the listener, the reinjection and
 * the pipeline read. Each stage adds its own settings section; composeBankSchema puts them
 * together, and stages/registry.ts calls it with the registered stages, so this folder knows
 * nothing of any stage.
 *
 * A bank file in policy-banks/ is an overlay on `default`; the merged result is validated
 * against the composed schema (ajv fills the defaults) and frozen. Every field has a default
 * and a description, so `postseal config print BANK` and docs/config.md explain every knob.
 */
import type { FromSchema } from 'json-schema-to-ts';

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
    host: {
      type: 'string',
      minLength: 1,
      default: '127.0.0.1',
      description: 'Address of the downstream server: an IP address or a host name, without brackets or port ([127.0.0.1]:10025 is refused at load; the port goes in port).',
    },
    port: { type: 'integer', minimum: 1, maximum: 65535, default: 10025, description: 'Port of the downstream server.' },
    heloName: { type: 'string', default: '', description: 'Name sent with EHLO/LHLO; empty uses the host name.' },
    connectTimeoutMs: { type: 'integer', minimum: 100, maximum: 600000, default: 10000, description: 'Time to connect and read the greeting.' },
    commandTimeoutMs: { type: 'integer', minimum: 100, maximum: 600000, default: 60000, description: 'Time for the reply to one command (EHLO, XFORWARD, MAIL, RCPT, DATA).' },
    dataDoneTimeoutMs: {
      type: 'integer',
      minimum: 100,
      maximum: 3600000,
      default: 300000,
      description: 'Time for the reply to the end of the message data, and the longest the downstream may stop reading the message while it is sent.',
    },
    tls: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'STARTTLS to this server (RFC 3207), after EHLO/LHLO when the server announces it, then EHLO again. Pooled connections stay encrypted for reuse.',
      properties: {
        mode: {
          type: 'string',
          enum: ['none', 'may', 'encrypt'],
          default: 'none',
          description:
            'none: plain. may: STARTTLS when announced, certificate not verified; plain only when the server does not announce STARTTLS (a handshake that fails is 451 4.7.5, REINJECT_TLS, never a silent fall back to plain). encrypt: STARTTLS required and the certificate verified against caFile and verifyName; otherwise 451 4.7.5 (REINJECT_TLS) and Postfix keeps the mail.',
        },
        caFile: {
          type: 'string',
          default: '',
          description:
            'PEM file of the certificate authorities that encrypt trusts, relative to the main file; empty uses the system store. Files are read at start-up and reload (CFG_FILE_UNREADABLE).',
        },
        verifyName: {
          type: 'string',
          default: '',
          description: 'Name (or address) the certificate must be issued to under encrypt; empty uses host.',
        },
        certFile: { type: 'string', default: '', description: 'PEM client certificate, for a server that asks for one, relative to the main file; set together with keyFile.' },
        keyFile: { type: 'string', default: '', description: 'PEM private key of certFile.' },
      },
    },
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

/** Addresses a notice goes to (notices.*Admin). */
const adminList = {
  type: 'array',
  default: [],
  maxItems: 100,
  items: { type: 'string', minLength: 3, maxLength: 254, pattern: '^[^\\s<>@]+@[A-Za-z0-9.-]+$' },
} as const;

export const commonBankSchema = {
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
        "The target for mail postseal generates itself: DMARC aggregate and failure reports (services.dmarcReports names the bank whose notify is used; docs/dmarc-reports.md), the DSNs of a bounce destiny (docs/quarantine.md, sent from <>; a bank whose listed stage has destiny bounce and that has no notify target is refused at load, CFG_INCONSISTENT) and the notices of the notices section (docs/notifications.md). Usually Postfix's reinjection smtpd for originating mail; postseal signs what it sends there itself (main config notify.from).",
    },
    notices: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description:
        'Notices about mail a content check blocked (rejected, discarded, held in quarantine or bounced), sent through the notify target, signed (docs/notifications.md). None is sent for mail that is delivered. A notice the notify target cannot take now (down, 4xx) tempfails the message (451), and the retry sends only what was not sent yet.',
      properties: {
        virusAdmin: { ...adminList, description: 'Addresses told of each blocked virus (amavisd $virus_admin).' },
        bannedAdmin: { ...adminList, description: 'Addresses told of each blocked banned attachment (amavisd $banned_admin).' },
        spamAdmin: { ...adminList, description: 'Addresses told of each blocked spam (amavisd $spam_admin); on a busy MX this is many notices.' },
        badHeaderAdmin: { ...adminList, description: 'Addresses told of each message blocked for a bad header (amavisd $bad_header_admin).' },
        warnVirusRecipient: {
          type: 'boolean',
          default: false,
          description: 'Tell each envelope recipient of a blocked virus (amavisd $warnvirusrecip). Refused on an originating bank, whose recipients are not ours.',
        },
        warnBannedRecipient: {
          type: 'boolean',
          default: false,
          description: 'Tell each envelope recipient of a blocked banned attachment (amavisd $warnbannedrecip). Refused on an originating bank.',
        },
        warnBannedSender: {
          type: 'boolean',
          default: false,
          description:
            'Tell the envelope sender that a message with a banned attachment was held, discarded or rejected, only when it is not forged: SPF passed for its domain, or DMARC passed for a From domain aligned with it. Never for a bounce (the DSN tells), never to the null sender. Spam and virus senders are never told (they are forged).',
        },
        warnBadHeaderSender: { type: 'boolean', default: false, description: 'The same as warnBannedSender for mail blocked for a bad header.' },
      },
    },
    greetingBanner: { type: 'string', default: 'postseal content filter', description: 'Text after the 220 code and host name in the greeting.' },
    discardEhloKeywords: {
      type: 'array',
      uniqueItems: true,
      items: { type: 'string', enum: ['8BITMIME', 'SMTPUTF8', 'PIPELINING', 'DSN', 'SIZE'] },
      default: [],
      description:
        'EHLO keywords this listener does not announce (amavisd @extra_ehlo_keywords inverse); their MAIL/RCPT parameters are then refused with 555 5.5.4 (BODY for 8BITMIME, SMTPUTF8, RET/ENVID/NOTIFY/ORCPT for DSN), except SIZE=, which is then not checked (the limit still holds during DATA). Hiding 8BITMIME makes Postfix downgrade 8-bit mail before it reaches us.',
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
    recipientDelimiter: {
      type: 'string',
      default: '+',
      maxLength: 16,
      pattern: '^[\\x21\\x23-\\x3f\\x41-\\x7e]*$',
      description:
        'As Postfix recipient_delimiter: each character separates a local part from its extension, so that a recipient list entry user@example.org (lovers, bypass) also matches user+tag@example.org; "+-" also matches user-tag@; empty: no extensions. Set it to what main.cf says.',
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
          description:
            'An upstream client silent this long is disconnected (Postfix smtpd_timeout). On a milter listener only until Postfix has negotiated: after that Postfix is silent while its SMTP client is slow (it sends CONNECT to RCPT together, and the message only once DATA is complete), and closes the connection itself when that session ends (docs/milter.md).',
        },
      },
    },
    stages: {
      type: 'array',
      uniqueItems: true,
      // The registered stage ids become its enum (composeBankSchema).
      items: { type: 'string' },
      default: ['loop-guard', 'header-sanity'],
      description: 'The stages this bank runs; the runner orders them by phase (check, edit, sign, seal), then by what each declares it runs after, then as listed.',
    },
  },
} as const;

export type CommonBank = FromSchema<typeof commonBankSchema>;
export type ForwardTarget = CommonBank['forward'];
/** A validated bank: the common keys and each stage's section (typed by the stage that owns it). */
export type Bank = CommonBank & { readonly [section: string]: unknown };

/** The whole bank schema: the common keys, one section per stage setting, and the stage ids as the enum of `stages`. */
export function composeBankSchema(sections: ReadonlyMap<string, object>, stageIds: readonly string[]): object {
  const schema = structuredClone(commonBankSchema) as unknown as { properties: Record<string, unknown> & { stages: { items: Record<string, unknown> } } };
  for (const [key, section] of sections) {
    if (key in schema.properties) throw new Error(`bank section "${key}" is defined twice`);
    schema.properties[key] = section;
  }
  schema.properties.stages.items.enum = [...stageIds];
  return schema;
}
