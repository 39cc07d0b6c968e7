/**
 * The registry of stable error codes. Tests and scripts match on `code`, never on text;
 * every error keeps the error that caused it in `cause`.
 */

export const errorCodes = {
  CFG_FILE_UNREADABLE: 'A configuration file could not be read.',
  CFG_YAML_INVALID: 'A configuration file is not valid YAML.',
  CFG_SCHEMA_INVALID: 'A configuration file does not match its schema.',
  CFG_BANK_MISSING: 'A listener names a policy bank that has no file.',
  CFG_INCONSISTENT: 'Settings that are valid alone contradict each other.',
  CFG_TEMPLATE_INVALID: 'A notice template (notify.templateDir or the shipped templates/notices) cannot be read, has no Subject line, or names an unknown placeholder.',
  CFG_KEY_UNREADABLE: 'A signing key file in the key table is missing or cannot be read.',
  CFG_KEY_INVALID: 'A signing key file is not a usable private key for its algorithm.',
  CFG_SIGNING_CATCH_ALL: 'A signing table rule would sign mail of any domain (or a whole top-level domain).',
  CFG_SPOOL_UNUSABLE: 'spool.dir cannot be created, or postseal cannot write a file in it.',
  CFG_DECODERS_UNUSABLE: 'decoders.use is unar, but lsar or unar (decoders.lsarPath, decoders.unarPath) is missing or does not run.',
  CFG_DECODERS_MISSING: 'Warning: decoders.use is auto and lsar or unar is not installed, so RAR, 7z, cab, xz, bzip2, ISO and BinHex files are not unpacked (apt install unar).',
  CFG_QUARANTINE_UNUSABLE: 'quarantine.dir cannot be created, or postseal cannot write a file in it (a warning: quarantine verdicts tempfail meanwhile).',
  CFG_STORE_UNUSABLE: 'The state store cannot be opened: the sqlite file or its folder is missing or unwritable, or the Redis URL is invalid.',
  CFG_SRS_SECRETS: 'The SRS secrets file (services.srs.secretsFile) is missing, empty, unreadable or readable by everyone.',
  CFG_KEY_TABLE_LOCKED: 'Another `postseal keys activate` holds the key table lock.',
  // Warnings: reported at start-up, on reload and by `config check`, without stopping either.
  CFG_KEY_PERMISSIONS: 'Warning: a private key file can be read or written by group or others.',
  CFG_LISTENER_NOT_LOOPBACK: 'Warning: a listener is bound to a non-loopback address, so other hosts can reach the reinjection smtpd through it.',
  CFG_MILTER_ACCEPT_UNCHECKED:
    'Warning: a milter listener with failureAction accept serves a bank with content checks (banned, virus, spam), which a stage timeout would let mail past.',
  CFG_FORWARD_UNRESOLVED: 'Warning: a forward or notify host name does not resolve, so the loop check could not compare it.',
  CFG_SPAM_SCANNER_NOT_ANSWERING: 'Warning: a spamd or rspamd that a bank lists in spam.spamd/spam.rspamd does not answer PING (spam checks tempfail until it does).',
  CFG_VIRUS_SCANNER_NOT_ANSWERING:
    'Warning: the clamd a bank lists in virus.socket/virus.host does not answer PING, or not inside an IDSESSION while virus.keepConnections is above 0 (its mail meets virus.onScannerFailure, 451 by default, until it does).',
  CFG_VIRUS_SCANNER_PASSES_DEEP:
    'Warning: the clamd a bank lists answers OK for a message nested deeper than its MaxRecursion (clamd.conf AlertExceedsMax is off), so an archive nested past it hides a virus.',
  CFG_KEYS_UNUSED:
    'Warning: the signing table has active keys, but no bank that a listener or bankRules uses lists dkim-sign, and none is for the domain of the DSNs, notices or DMARC reports postseal sends, so no mail is signed.',
  CFG_NOTIFY_UNSIGNED: 'Warning: the signing table has no key for the domain of notify.from, so DSNs and notices go unsigned.',
  CFG_STORE_NOT_ANSWERING:
    'Warning: store.backend is redis and Redis does not answer PING (down, wrong host or port, wrong password or database number): what needs the store fails until it does.',
  CFG_FORWARD_NOT_ANSWERING: 'Warning (config check --probe): a forward target does not answer with an SMTP/LMTP greeting.',
  NODE_UNSUPPORTED: 'postseal was run on a Node.js older than 24 (node:sqlite and other parts are missing there); bin/postseal runs the Node 24 that the install brings.',
  LISTEN_FAILED: 'A listener could not bind its address and port.',
  POLICY_LISTEN_FAILED: 'The Postfix policy service (services.policy) could not bind its address and port or its unix socket.',
  CFG_POLICY_WHITELIST: 'A greylisting whitelist file (services.policy.greylist) cannot be read or has a line postseal cannot read.',
  METRICS_LISTEN_FAILED: 'The metrics and health service (services.metrics) could not bind its address and port.',
  SRS_LISTEN_FAILED: 'The SRS map service (services.srs) could not bind one of its addresses and ports.',
  SPOOL_FAILED: 'The message could not be written to the spool.',
  SPOOL_FULL: "The message could not be written to the spool because its file system is full (ENOSPC) or the quota of postseal's user is used up (EDQUOT).",
  MESSAGE_TOO_BIG: 'The message exceeded the bank maxMessageSizeBytes.',
  HEADER_TOO_BIG: 'The header section did not end within spool.maxHeaderBytes.',
  MILTER_TOO_MANY_EDITS: 'A milter message needs more header fields removed or rewritten than Postfix can take in reasonable time (each costs Postfix a pass over the header).',
  UPSTREAM_ABORTED: 'The upstream client went away during DATA.',
  MILTER_PROTOCOL: 'The MTA broke the milter protocol (postseal closes the connection; Postfix applies milter_default_action), or did not allow a modification the message needs.',
  SPAM_SCANNER_FAILED: 'spamd or rspamd could not be reached, did not answer within its timeoutMs, or answered something that is not its protocol.',
  STAGE_FAILED: 'A stage threw an error.',
  STAGE_TIMEOUT: 'A stage ran longer than timeouts.stageTimeoutMs.',
  STAGE_ORDER_CYCLE: 'The stages of a bank declare a cycle in their order.',
  DEADLINE_EXCEEDED: 'The message did not finish within timeouts.messageDeadlineMs.',
  STORE_UNAVAILABLE: 'The state store did not carry out an operation: Redis unreachable or too slow, sqlite busy past its timeout or failing, or the store closed.',
  QUARANTINE_FAILED: 'A message with a quarantine verdict could not be held: the quarantine folder is full (quarantine.minFreeBytes), missing or not writable.',
  QUARANTINE_TOO_BIG: 'A message with a quarantine verdict is larger than quarantine.maxMessageSizeBytes.',
  QUARANTINE_FULL: 'A message with a quarantine verdict would take the held messages over quarantine.maxTotalBytes.',
  QUARANTINE_NOT_FOUND: 'No held message has this quarantine id.',
  NOTIFY_FAILED: 'A delivery status notification (destiny bounce) or a notice could not be handed to the bank notify target: unreachable, too slow, a 4xx, or signing failed.',
  REINJECT_REFUSED: 'The downstream server refused the connection.',
  REINJECT_TIMEOUT: 'The downstream server did not answer in time.',
  REINJECT_PROTOCOL: 'The downstream server broke the SMTP protocol or closed the connection.',
  REINJECT_TLS: 'forward.tls: the downstream did not offer STARTTLS where encrypt requires it, the TLS handshake failed, or its certificate did not verify.',
} as const;

export type ErrorCode = keyof typeof errorCodes;

/** Something start-up, reload and `config check` report without refusing the configuration. */
export interface ConfigWarning {
  readonly code: ErrorCode;
  /** Names the file, the JSON pointer where there is one, and the fix. */
  readonly message: string;
}

export class PostsealError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PostsealError';
    this.code = code;
  }
}

export function isPostsealError(err: unknown, code?: ErrorCode): err is PostsealError {
  return err instanceof PostsealError && (code === undefined || err.code === code);
}
