/**
 * The `virus` section of a policy bank (stages/registry.ts adds it to the bank schema), in
 * amavisd-new's vocabulary where it has one: destiny ($final_virus_destiny), lovers
 * (@virus_lovers_maps), bypass (@bypass_virus_checks_maps), the X-Virus-Scanned field
 * ($X_HEADER_TAG / $X_HEADER_LINE).
 */
import type { FromSchema } from 'json-schema-to-ts';
import { destinySchema, recipientListSchema } from '../../pipeline/destiny';

/** Debian's clamav-daemon listens here (clamd.conf LocalSocket), and amavisd-new on Debian talks to it there. */
export const DEBIAN_CLAMD_SOCKET = '/run/clamav/clamd.ctl';
/** clamd's default StreamMaxLength (25M). */
export const CLAMD_STREAM_MAX_BYTES = 25 * 1024 * 1024;

export const virusBankSchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  description:
    "virus stage: the message as received is streamed to clamd (INSTREAM), which decodes MIME and archives itself; a virus is rejected by default. A scanner that is down, slow or answers garbage is a tempfail by default (never a silent pass). docs/content-checks.md, 'Virus (clamd)'.",
  properties: {
    socket: {
      type: 'string',
      default: DEBIAN_CLAMD_SOCKET,
      minLength: 1,
      maxLength: 107,
      description: "clamd's unix socket (clamd.conf LocalSocket); used unless host is set.",
    },
    host: {
      type: 'string',
      default: '',
      maxLength: 253,
      description: 'When set, clamd is reached over TCP at host:port (clamd.conf TCPAddr/TCPSocket) instead of the unix socket.',
    },
    port: { type: 'integer', minimum: 1, maximum: 65535, default: 3310, description: "clamd's TCP port, with host." },
    connectTimeoutMs: { type: 'integer', minimum: 50, maximum: 60000, default: 2000, description: 'Time for the connection to clamd to open.' },
    timeoutMs: {
      type: 'integer',
      minimum: 100,
      maximum: 3600000,
      default: 30000,
      description:
        'Time for one scan, from the connect to the answer; must be below timeouts.stageTimeoutMs (checked at load). A scan that takes longer is a scanner failure (onScannerFailure).',
    },
    chunkBytes: { type: 'integer', minimum: 1024, maximum: 1048576, default: 65536, description: 'Size of the INSTREAM chunks the message is sent in.' },
    keepConnections: {
      type: 'integer',
      minimum: 0,
      maximum: 64,
      default: 8,
      description:
        "Idle connections to clamd kept open (clamd IDSESSION) for the next messages, per worker process and bank; 0 opens a connection per message, as amavisd-new does (and as a clamd-compatible scanner without IDSESSION needs). A kept connection is closed after 10 s idle. With kept connections, keep timeoutMs below clamd's ReadTimeout (120 s by default): clamd closes a session that sent nothing for that long, even while it scans.",
    },
    maxScanBytes: {
      type: 'integer',
      minimum: 1024,
      maximum: 4294967295,
      default: CLAMD_STREAM_MAX_BYTES,
      description:
        "Larger messages are not sent to clamd (VIRUS_NOT_SCANNED_TOO_BIG, see onTooBig). Keep it at or below clamd's StreamMaxLength (25M by default): clamd refuses a longer stream, which is the same finding.",
    },
    largeMessages: {
      type: 'string',
      enum: ['pieces', 'skip'],
      default: 'pieces',
      description:
        'A message larger than maxScanBytes: pieces = sent to clamd as several smaller MIME messages that carry its parts as they are, as many whole parts as fit in maxScanBytes each (every byte of the body is in one of them; amavisd-new scans a message part by part too); a single part larger than maxScanBytes is still not scanned (VIRUS_NOT_SCANNED_TOO_BIG naming it, onTooBig decides). skip = not scanned at all (VIRUS_NOT_SCANNED_TOO_BIG).',
    },
    maxMimeDepth: {
      type: 'integer',
      minimum: 1,
      maximum: 99,
      default: 10,
      description:
        "clamd stops going into a message at its MaxRecursion (17 by default; MIME levels and archive levels count together) and answers OK for what lies deeper. A message whose MIME nests deeper than this, and that clamd found clean whole, is scanned again in pieces (as largeMessages pieces does: every part at the top of a MIME message of its own), so that what lies deep is scanned too; one that cannot be cut (nested past 100 levels, or split differently by mail readers) is not scanned (VIRUS_NOT_SCANNED_TOO_BIG, onTooBig decides). Keep it a few levels below clamd's MaxRecursion, so that an archive in the deepest part is still opened.",
    },
    onTooBig: {
      type: 'string',
      enum: ['auto', 'pass', 'tempfail', 'reject'],
      default: 'auto',
      description:
        'A message that was not scanned because it is larger than maxScanBytes or than clamd accepts: pass = delivered unscanned with the finding (and no X-Virus-Scanned field); tempfail = 451 4.3.4, Postfix retries (and bounces it after maximal_queue_lifetime); reject = 552 5.3.4, Postfix bounces it to the sender at once; auto = pass on a bank that does not sign, reject on one that signs (dkim-sign), where pass is refused at load: unscanned mail is never signed.',
    },
    destiny: destinySchema('reject', 'mail in which clamd found a virus (554 5.7.0 naming it when rejected)'),
    fakeSenderNames: {
      type: 'array',
      default: ['.'],
      maxItems: 1000,
      items: { type: 'string', minLength: 1, maxLength: 200 },
      description:
        'Viruses known to fake their sender (amavisd @viruses_that_fake_sender_maps, whose default is every virus): regular expressions (case-insensitive) matched against clamd\'s names. With destiny bounce, a virus matching one sends no DSN: the message is discarded instead (250 2.7.0 saying so, in the log), since a DSN would go to a forged address (backscatter). The default "." matches every virus; [] bounces all. Not applied on a bank that signs (dkim-sign), whose sender is our authenticated user. Sender notices are never sent for viruses.',
    },
    onScannerFailure: {
      type: 'string',
      enum: ['tempfail', 'pass'],
      default: 'tempfail',
      description:
        "clamd unreachable, too slow (timeoutMs), or answering an error or garbage: tempfail = 451 4.3.0, the mail stays in Postfix's queue; pass = delivered unscanned with the finding VIRUS_SCANNER_FAILED and a warning in the log (refused at load on a bank that signs).",
    },
    lovers: {
      ...recipientListSchema,
      description: `Virus lovers (amavisd @virus_lovers_maps): when every recipient is one, infected mail is delivered with X-Postseal-Alert instead of meeting the destiny. ${recipientListSchema.description}`,
    },
    bypass: {
      ...recipientListSchema,
      description: `No virus scan (amavisd @bypass_virus_checks_maps) when every recipient is listed: VIRUS_BYPASSED in the log, no X-Virus-Scanned. ${recipientListSchema.description}`,
    },
    scannedHeader: { type: 'boolean', default: true, description: 'Add X-Virus-Scanned to scanned mail that is delivered (amavisd $X_HEADER_TAG).' },
    scannedHeaderValue: {
      type: 'string',
      default: '',
      maxLength: 200,
      pattern: '^[\\x20-\\x7e]*$',
      description: 'The X-Virus-Scanned value (amavisd $X_HEADER_LINE); empty: "postseal at <authservId>".',
    },
  },
} as const;

export type VirusSettings = FromSchema<typeof virusBankSchema>;
