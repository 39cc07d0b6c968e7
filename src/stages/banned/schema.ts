/**
 * The `banned` section of a policy bank (stages/registry.ts adds it to the bank schema): the
 * ordered rules (amavisd `$banned_filename_re`), the destiny and recipient exceptions (amavisd
 * `$final_banned_destiny`, `@banned_files_lovers_maps`, `@bypass_banned_checks_maps`), what
 * happens to what cannot be checked, and the unpacking limits.
 */
import type { FromSchema } from 'json-schema-to-ts';
import { destinySchema, recipientListSchema } from '../../pipeline/destiny';

const MiB = 1024 * 1024;

/**
 * amavisd's Debian default (/etc/amavis/conf.d/20-debian_defaults), in order, with the file
 * types of modern Windows malware added after it (scripts that run on a double click,
 * shortcuts, HTML applications, installers). docs/content-checks.md maps each line.
 */
export const DEFAULT_RULES = [
  { deny: '\\.[^./]*\\.(exe|vbs|pif|scr|bat|cmd|com|cpl|dll)\\.?$', on: 'name', comment: 'double extension ending in an executable one' },
  { deny: '\\{[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}\\}?$', on: 'name', comment: 'Windows class id (CLSID) extension' },
  { deny: '^application/x-msdownload$', on: 'declaredType' },
  { deny: '^application/x-msdos-program$', on: 'declaredType' },
  { deny: '^application/hta$', on: 'declaredType' },
  { deny: '.\\.(exe|vbs|pif|scr|bat|cmd|com|cpl)$', on: 'name', comment: 'executable extension' },
  { deny: '^\\.(exe-ms|dll)$', on: 'type', comment: 'Windows program, whatever its name' },
  { deny: '.\\.(hta|js|jse|vbe|wsf|wsh|lnk|msi)$', on: 'name', comment: 'runs when opened on Windows' },
  { deny: '^\\.lnk$', on: 'type', comment: 'Windows shortcut, whatever its name' },
] as const;

const rule = {
  type: 'object',
  additionalProperties: false,
  description: 'One rule: exactly one of deny and allow (checked at load), and what it is matched against.',
  properties: {
    deny: {
      type: 'string',
      maxLength: 2000,
      default: '',
      description:
        'A JavaScript regular expression (case-insensitive): a part it matches is banned (amavisd `qr/.../ => 1`, or a bare qr). Write what is inside the qr quote; a whole qr quote, /.../i, \\z or \\A is refused at load.',
    },
    allow: {
      type: 'string',
      maxLength: 2000,
      default: '',
      description: 'A JavaScript regular expression (case-insensitive): a part it matches is allowed, and no later rule is tried (amavisd `qr/.../ => 0`). Written as for deny.',
    },
    on: {
      type: 'string',
      enum: ['any', 'name', 'type', 'declaredType'],
      default: 'any',
      description:
        'What the pattern is matched against: name = file names (declared, or of archive members, with trailing dots and spaces and invisible characters removed), type = the detected type as amavisd writes it (".exe-ms", ".exe-unix" for ELF programs, ".zip"; docs/content-checks.md lists them) or UNDECIPHERABLE, declaredType = the Content-Type, any = all of them (what amavisd does).',
    },
    comment: { type: 'string', maxLength: 200, default: '', description: 'Why the rule is there; logged with the finding (amavisd `(?#comment)`).' },
  },
} as const;

const limits = {
  type: 'object',
  additionalProperties: false,
  default: {},
  description:
    'How far archives (zip, tar, gzip, winmail.dat; RAR, 7z, cab, xz, bzip2, ISO, BinHex through unar, main config decoders) are unpacked per message. Hitting a cap is a BANNED_LIMIT_EXCEEDED finding; onLimit (ratio, depth) or onTooLarge (sizes, members) says what follows.',
  properties: {
    maxDepth: { type: 'integer', minimum: 1, maximum: 50, default: 8, description: 'Archives inside archives, the outermost counting 1 (amavisd $MAXLEVELS).' },
    maxMembers: {
      type: 'integer',
      minimum: 1,
      maximum: 1000000,
      default: 2000,
      description: 'Archive members per message, at all depths (amavisd $MAXFILES); members of zip-based documents (docx, odt, jar, apk) do not count.',
    },
    maxMemberBytes: {
      type: 'integer',
      minimum: 65536,
      default: 32 * MiB,
      description: 'Bytes of one archive (a decoded MIME part, or a decompressed member) held in memory to walk into it; a larger one is not walked into.',
    },
    maxTotalBytes: { type: 'integer', minimum: 65536, default: 128 * MiB, description: 'Decompressed bytes per message, all members together (amavisd $MAX_EXPANSION_QUOTA).' },
    maxRatio: {
      type: 'integer',
      minimum: 2,
      default: 200,
      description:
        'Decompressed to compressed size of an archive member unpacked whole (an inner archive), declared or real: above it is a zip bomb (deflate reaches 1032; text and logs 5 to 500). Other members are read for their first 32 KiB only, and not held to it.',
    },
    ratioFloorBytes: { type: 'integer', minimum: 0, default: MiB, description: 'A member that decompresses to fewer bytes is never a bomb, whatever its ratio.' },
    maxUnarArchives: {
      type: 'integer',
      minimum: 1,
      maximum: 100000,
      default: 64,
      description:
        'Archives per message read through unar (RAR, 7z, cab, xz, bzip2, ISO; main config decoders), at all depths: each costs two tool runs (about 60 ms, in decoders.maxProcesses slots shared by all messages); the next is an `archives` limit (onTooLarge). Measured without it: a 100 KB zip of 400 tiny 7z kept both slots busy for 47 s.',
    },
  },
} as const;

export const bannedBankSchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  description:
    'banned stage: file names and types of every MIME part and archive member, against ordered allow/deny rules (amavisd $banned_filename_re). docs/content-checks.md "Banned files".',
  properties: {
    destiny: destinySchema('reject', 'mail with a banned part'),
    lovers: {
      ...recipientListSchema,
      description: `Recipients who get banned parts (amavisd @banned_files_lovers_maps): delivered with X-Postseal-Alert. ${recipientListSchema.description}`,
    },
    bypass: { ...recipientListSchema, description: `Recipients whose mail is not checked (amavisd @bypass_banned_checks_maps). ${recipientListSchema.description}` },
    rules: {
      type: 'array',
      maxItems: 1000,
      items: rule,
      default: DEFAULT_RULES,
      description:
        'Ordered rules; for each part, the first rule that matches the part or any part it is inside (its archive, its multipart) decides, and a part no rule matches is allowed. The default is amavisd-new Debian default plus Windows script and shortcut types.',
    },
    disguisedNames: {
      type: 'string',
      enum: ['banned', 'allowed'],
      default: 'banned',
      description: 'A file name with bidirectional controls (U+202E RIGHT-TO-LEFT OVERRIDE makes "fdp.exe" show as "exe.pdf") or invisible characters.',
    },
    encrypted: {
      type: 'string',
      enum: ['banned', 'allowed'],
      default: 'allowed',
      description:
        'An encrypted archive member: its name is still checked by the rules (the directory is not encrypted), its content cannot be. banned refuses every password-protected archive.',
    },
    onLimit: {
      type: 'string',
      enum: ['banned', 'allowed'],
      default: 'banned',
      description:
        'What looks like evasion: an archive a zip-bomb ratio or the nesting depth stopped, a damaged archive, a part that says archive and is none, MIME that mail readers read differently (UNDECIPHERABLE). banned treats it as a banned part; allowed delivers it unchecked (finding and log line). No tempfail: a retry meets the same limit.',
    },
    onTooLarge: {
      type: 'string',
      enum: ['unchecked', 'banned'],
      default: 'unchecked',
      description:
        'An archive too big to look into (maxMemberBytes, maxTotalBytes, maxMembers), which ordinary mail reaches: unchecked delivers it with X-Postseal-Alert: UNCHECKED (finding BANNED_UNCHECKED and a log line; amavisd delivers CC_UNCHECKED by default); banned treats it as a banned part.',
    },
    limits,
  },
} as const;

export type BannedSettings = FromSchema<typeof bannedBankSchema>;
export type BannedRule = BannedSettings['rules'][number];
