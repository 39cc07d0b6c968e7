/**
 * The `spam` section of a policy bank (stages/registry.ts adds it to the bank schema), read by
 * the `spam` stage (scanning, verdict) and the `spam-tag` stage (header removal, Subject tag).
 * Names and defaults follow amavisd-new: the levels are Debian's 20-debian_defaults
 * ($sa_tag_level_deflt 2.0, $sa_tag2_level_deflt 6.31, $sa_kill_level_deflt 6.31), the size
 * limit $sa_mail_body_size_limit (200 KiB), and $remove_existing_spam_headers (on).
 */
import type { FromSchema } from 'json-schema-to-ts';
import { destinySchema, recipientListSchema } from '../../pipeline/destiny';

const endpoint = (port: number, what: string) =>
  ({
    host: { type: 'string', minLength: 1, maxLength: 253, default: '127.0.0.1', description: `${what}'s TCP address (host name or IP).` },
    port: { type: 'integer', minimum: 1, maximum: 65535, default: port, description: `${what}'s TCP port.` },
    socket: { type: 'string', maxLength: 107, default: '', description: `${what}'s unix socket path; when set, host and port are not used.` },
    timeoutMs: {
      type: 'integer',
      minimum: 100,
      maximum: 600000,
      default: 30000,
      description: `The longest one scan may take (connect, send, answer); a scanner slower than this is a scanner failure (onScannerFailure). Must be below timeouts.stageTimeoutMs.`,
    },
  }) as const;

export const spamBankSchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  description:
    'spam stage: SpamAssassin (spamd) and/or rspamd score the message; the levels decide the X-Spam-* header fields, the Subject tag and the destiny, as amavisd-new does (docs/content-checks.md).',
  properties: {
    spamd: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: "SpamAssassin's spamd, SPAMC protocol.",
      properties: {
        enabled: { type: 'boolean', default: false, description: 'Ask spamd.' },
        ...endpoint(783, 'spamd'),
        command: {
          type: 'string',
          enum: ['report', 'symbols'],
          default: 'report',
          description: "report: spamd's REPORT, which gives each rule's points (tests=[GTUBE=1000] in X-Spam-Status); symbols: SYMBOLS, rule names only (a shorter answer).",
        },
        user: { type: 'string', maxLength: 64, pattern: '^[\\x21-\\x7e]*$', default: '', description: "spamd's User header (whose preferences spamd applies); none when empty." },
      },
    },
    rspamd: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: "rspamd's normal worker, HTTP /checkv2.",
      properties: {
        enabled: { type: 'boolean', default: false, description: 'Ask rspamd.' },
        ...endpoint(11333, 'rspamd'),
        settingsId: {
          type: 'string',
          maxLength: 64,
          pattern: '^[A-Za-z0-9_.-]*$',
          default: '',
          description: "Sent as Settings-ID: which of rspamd's settings (settings.conf) apply; none when empty.",
        },
        passAll: {
          type: 'boolean',
          default: false,
          description: 'Sent as "Pass: all": rspamd runs every rule even when the result is already certain (complete tests=[...], more work).',
        },
        honourAction: {
          type: 'boolean',
          default: true,
          description:
            "Also act on rspamd's own action: reject counts as at or above killLevel, add header and rewrite subject as at or above tag2Level, whatever the score; soft reject (rspamd's ratelimit or greylisting) is a 451 4.7.1 tempfail, so Postfix retries later (greylist is ignored).",
        },
      },
    },
    tagLevel: {
      type: 'number',
      minimum: -999,
      maximum: 9999,
      default: 2.0,
      description:
        'At or above this score, X-Spam-Flag: NO, X-Spam-Score, X-Spam-Level and X-Spam-Status are added (amavisd $sa_tag_level_deflt; -999 adds them to every scanned message).',
    },
    tag2Level: {
      type: 'number',
      minimum: -999,
      maximum: 9999,
      default: 6.31,
      description: 'At or above this score the message is spam: X-Spam-Flag: YES, X-Spam-Status: Yes and the subjectTag (amavisd $sa_tag2_level_deflt).',
    },
    killLevel: {
      type: 'number',
      minimum: -999,
      maximum: 9999,
      default: 6.31,
      description: 'At or above this score the destiny applies, unless every recipient is in lovers (amavisd $sa_kill_level_deflt).',
    },
    destiny: destinySchema('reject', 'spam at or above killLevel'),
    dsnCutoffLevel: {
      type: 'number',
      minimum: -999,
      maximum: 9999,
      default: 10,
      description:
        'With destiny bounce: at or above this score no DSN is sent and the message is discarded instead, as the sender of such spam is almost always forged and the DSN would be backscatter (amavisd $sa_dsn_cutoff_level).',
    },
    subjectTag: {
      type: 'string',
      maxLength: 64,
      pattern: '^[\\x20-\\x7e]*$',
      default: '',
      description:
        'Put before the Subject of spam at or above tag2Level, e.g. "***SPAM*** " (amavisd $sa_spam_subject_tag; Debian sets that, amavisd itself none). Empty: the Subject is left alone. Needs the spam-tag stage.',
    },
    maxScanBytes: {
      type: 'integer',
      minimum: 1024,
      maximum: 1073741824,
      default: 204800,
      description:
        'A body larger than this is cut at the last line end within it, and the scanners get the header and that part (finding SPAM_TRUNCATED), as amavisd does with $sa_mail_body_size_limit: scanners are slow on large mail, and skipping it would let spam through with a large attachment.',
    },
    removeExistingHeaders: {
      type: 'boolean',
      default: true,
      description: 'The spam-tag stage removes every X-Spam-* field the message arrived with, so that none a sender wrote passes for ours (amavisd $remove_existing_spam_headers).',
    },
    onScannerFailure: {
      type: 'string',
      enum: ['tempfail', 'pass'],
      default: 'tempfail',
      description:
        'A scanner down, slower than its timeoutMs or answering garbage: tempfail = 451 4.3.0 (Postfix retries); pass = deliver unscanned (logged, finding SPAM_SCANNER_FAILED; refused at load on a bank that signs).',
    },
    lovers: {
      ...recipientListSchema,
      description: `Spam lovers (amavisd @spam_lovers_maps): when every recipient is listed, spam above killLevel is delivered tagged, not given its destiny. ${recipientListSchema.description}`,
    },
    bypass: { ...recipientListSchema, description: `No spam check (amavisd @bypass_spam_checks_maps) when every recipient is listed. ${recipientListSchema.description}` },
  },
} as const;

export type SpamSettings = FromSchema<typeof spamBankSchema>;
