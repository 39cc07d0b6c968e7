/**
 * JSON Schema of the main configuration file: listeners, trust, spool, state store, logging and
 * side services (metrics, SRS, policy).
 * The schema is the only source of the TypeScript type (STYLE.md §7).
 */
import type { FromSchema } from 'json-schema-to-ts';

export const mainConfigSchema = {
  $id: 'postseal:main',
  type: 'object',
  additionalProperties: false,
  properties: {
    hostname: {
      type: 'string',
      default: '',
      description: 'Name in the greeting, EHLO and trace fields; empty uses the machine host name.',
    },
    authservId: {
      type: 'string',
      default: '',
      description: 'authserv-id of our Authentication-Results and trace fields (RFC 8601); empty uses hostname.',
    },
    bankDir: {
      type: 'string',
      default: 'policy-banks',
      description: 'Folder with one YAML file per policy bank, relative to this file. Empty uses the banks shipped with postseal.',
    },
    listeners: {
      type: 'array',
      minItems: 1,
      description: 'One listener per port; the port picks the policy bank (amavisd $interface_policy).',
      default: [
        { port: 10024, bank: 'default' },
        { port: 10026, bank: 'ORIGINATING' },
        { port: 10028, bank: 'NOCHECKS' },
      ],
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['port', 'bank'],
        properties: {
          address: {
            type: 'string',
            default: '127.0.0.1',
            description:
              'Address to bind (an IP address or a host name; empty binds every address); loopback unless Postfix runs on another host. Milter socket specifications (inet:8891@localhost, local:/path) are refused: postseal listens on TCP, so write the address and port apart.',
          },
          port: { type: 'integer', minimum: 0, maximum: 65535, description: 'TCP port (0 picks a free one, for tests).' },
          bank: { type: 'string', minLength: 1, description: 'Policy bank name: a file <bank>.yaml in bankDir, or default.' },
          protocol: {
            type: 'string',
            enum: ['smtp', 'lmtp', 'milter'],
            default: 'smtp',
            description:
              'lmtp answers every recipient on its own after DATA. milter serves Postfix smtpd_milters / non_smtpd_milters (docs/milter.md): the same pipeline, its changes sent back as milter modifications, no reinjection and no second queue pass; the bank forward is not used.',
          },
          maxConnections: {
            type: 'integer',
            minimum: 1,
            maximum: 100000,
            default: 500,
            description:
              'Simultaneous clients per process. More get 421 4.3.2 (Postfix retries); a milter listener closes them at once (Postfix applies milter_default_action), with several workers after handing each to a worker that has room (docs/milter.md "Processes").',
          },
          milter: {
            type: 'object',
            additionalProperties: false,
            default: {},
            description: 'Settings of a milter listener (protocol: milter); smtp and lmtp listeners ignore them.',
            properties: {
              failureAction: {
                type: 'string',
                enum: ['tempfail', 'accept'],
                default: 'tempfail',
                description:
                  'What Postfix is told when a stage fails or times out, the message deadline passes or the spool cannot be written: tempfail (451 4.x.x: Postfix defers or the client retries; nothing is lost) or accept (the message goes on unchanged: unchecked and unsigned; on a bank with content checks, a banned or virus stage that a sender made run past its timeout then delivers the message unscanned, so start-up and config check warn CFG_MILTER_ACCEPT_UNCHECKED). Policy verdicts are not affected. Protocol errors close the connection, and Postfix applies its own milter_default_action (set it to tempfail).',
              },
            },
          },
          tls: {
            type: 'object',
            additionalProperties: false,
            required: ['certFile', 'keyFile'],
            description: 'Offer STARTTLS with this certificate; without it STARTTLS is not offered.',
            properties: {
              certFile: { type: 'string', minLength: 1, description: 'PEM certificate chain.' },
              keyFile: { type: 'string', minLength: 1, description: 'PEM private key.' },
              minVersion: {
                type: 'string',
                enum: ['TLSv1.2', 'TLSv1.3'],
                default: 'TLSv1.2',
                description:
                  'Oldest TLS protocol accepted; a client offering only older ones fails the handshake (Postfix then retries in plain text or defers, per its smtp_tls_security_level).',
              },
              ciphers: {
                type: 'string',
                default: '',
                description: "OpenSSL cipher list for TLS 1.2 (e.g. ECDHE+AESGCM:ECDHE+CHACHA20); empty keeps Node's default list. TLS 1.3 suites are not affected.",
              },
            },
          },
        },
      },
    },
    bankRules: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description:
        "Banks chosen per transaction at MAIL FROM (amavisd @client_ipaddr_policy and sender maps). Precedence: the listener port picks a bank; the first matching clientNetworks rule replaces it; the first matching senders rule replaces that; a valid DKIM signer (dkimVerify.signerBanks) may switch once more after DATA. The chosen bank's pipeline, forward and limits serve the whole transaction, the downstream MAIL included.",
      properties: {
        clientNetworks: {
          type: 'array',
          default: [],
          description: 'Rules by client address: the XFORWARD ADDR from a peer in xforwardTrustedNetworks, else the peer itself. IPv4 and IPv6 CIDR lists (amavisd MYNETS).',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['networks', 'bank'],
            properties: {
              networks: {
                type: 'array',
                minItems: 1,
                items: { type: 'string', minLength: 1 },
                description: 'Networks as 192.0.2.0/24 or 2001:db8::/32; a bare address is one host.',
              },
              bank: { type: 'string', minLength: 1, description: 'Bank used when the client is in one of the networks: a file <bank>.yaml in bankDir.' },
              listenerBanks: {
                type: 'array',
                items: { type: 'string', minLength: 1 },
                default: [],
                description: 'Apply the rule only to mail whose listener bank is one of these (e.g. not on the NOCHECKS port); empty: every listener.',
              },
            },
          },
        },
        macros: {
          type: 'array',
          default: [],
          description:
            "Rules by milter macro, on milter listeners only (docs/milter.md): the first rule whose macro has one of its values replaces the listener's bank, before clientNetworks and senders, whose listenerBanks then compare with the bank it chose (a macro rule stands for the port of the content-filter layout). Postfix sends {daemon_name} (milter_macro_daemon_name, settable per smtpd service in master.cf) and {auth_authen} (the SASL login name of an authenticated client); postseal asks for every macro named here.",
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['macro', 'bank'],
            properties: {
              macro: {
                type: 'string',
                pattern: '^(\\{[A-Za-z0-9_]+\\}|[A-Za-z_])$',
                description: 'Macro name as Postfix writes it: {daemon_name}, {auth_authen}, {client_addr}; one-letter macros without braces.',
              },
              values: {
                type: 'array',
                items: { type: 'string' },
                default: [],
                description: 'Values that match, exactly (case-sensitive); empty: any non-empty value (with {auth_authen}: any authenticated client).',
              },
              bank: { type: 'string', minLength: 1, description: 'Bank used when the macro matches: a file <bank>.yaml in bankDir.' },
              listenerBanks: {
                type: 'array',
                items: { type: 'string', minLength: 1 },
                default: [],
                description: 'Apply the rule only on milter listeners of these banks; empty: every milter listener.',
              },
            },
          },
        },
        senders: {
          type: 'array',
          default: [],
          description:
            'Rules by envelope sender (MAIL FROM), checked after clientNetworks. Anyone can write any MAIL FROM: a rule applies only on the listeners it names (listenerBanks), which should be those whose clients are our own (ORIGINATING), never the inbound one.',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['senders', 'bank', 'listenerBanks'],
            properties: {
              senders: {
                type: 'array',
                minItems: 1,
                description:
                  'user@example.org (that address), example.org (any address of that domain), *.example.org (its subdomains, not example.org itself), or <> (the null sender of bounces). Case-insensitive.',
                items: { type: 'string', pattern: '^(<>|[^@\\s<>]+@[A-Za-z0-9.-]+[A-Za-z0-9]|(\\*\\.)?[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)+)$' },
              },
              bank: { type: 'string', minLength: 1, description: 'Bank used when the sender matches: a file <bank>.yaml in bankDir.' },
              listenerBanks: {
                type: 'array',
                minItems: 1,
                items: { type: 'string', minLength: 1 },
                description:
                  'The listener banks the rule applies on (required: the envelope sender is forgeable, so name only listeners whose clients are our own, e.g. ORIGINATING).',
              },
            },
          },
        },
      },
    },
    xforwardTrustedNetworks: {
      type: 'array',
      items: { type: 'string', minLength: 1 },
      default: ['127.0.0.0/8', '::1/128'],
      description: 'Clients whose XFORWARD attributes (client address, HELO, queue id) are believed and passed on; others are ignored and logged.',
    },
    dns: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'The resolver that DKIM, SPF, DMARC and ARC use (a local caching recursive server is best).',
      properties: {
        servers: {
          type: 'array',
          items: { type: 'string', pattern: '^(\\[[0-9A-Fa-f:.]+\\](:[0-9]{1,5})?|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]+|[0-9.]+(:[0-9]{1,5})?)$' },
          default: [],
          description: 'Recursive servers as 127.0.0.1, 127.0.0.1:5353, ::1 or [::1]:5353, asked in turn; empty uses the system resolvers (/etc/resolv.conf).',
        },
        timeoutMs: { type: 'integer', minimum: 50, maximum: 60000, default: 2000, description: 'Time to wait for one server to answer one try.' },
        retries: { type: 'integer', minimum: 0, maximum: 10, default: 2, description: 'Rounds over all servers after the first; after the last a lookup is a temperror.' },
        cacheMaxEntries: {
          type: 'integer',
          minimum: 0,
          maximum: 10000000,
          default: 10000,
          description: 'Answers kept in memory (least recently used go first); 0 disables the cache.',
        },
        cacheMaxTtlSec: { type: 'integer', minimum: 0, maximum: 604800, default: 3600, description: 'Longest time an answer is cached, whatever its TTL.' },
      },
    },
    dkimSign: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description:
        'Signing keys for the dkim-sign stage (docs/signing.md). Both files are read at start-up and on SIGHUP; a key that cannot be loaded stops start-up, or keeps the running keys on reload.',
      properties: {
        keyTableFile: {
          type: 'string',
          default: '',
          description: 'YAML key table: key name -> domain, selector, PEM key file, algorithm; relative to this file. Empty: no keys, nothing is signed.',
        },
        signingTableFile: {
          type: 'string',
          default: '',
          description: 'YAML signing table: author (From) domain rules -> key names; relative to this file. Set together with keyTableFile.',
        },
      },
    },
    spool: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'Where message data waits while the stages run.',
      properties: {
        dir: {
          type: 'string',
          default: '',
          description:
            'Folder for spool files of large messages, relative to this file; empty uses the system temp folder. Created with mode 0700 if missing; start-up, reload and `config check` fail (CFG_SPOOL_UNUSABLE) if postseal cannot write a file in it.',
        },
        memoryThresholdBytes: {
          type: 'integer',
          minimum: 0,
          default: 1048576,
          description: 'Messages up to this size stay in memory; larger ones go to a temp file that is removed afterwards.',
        },
        maxHeaderBytes: {
          type: 'integer',
          minimum: 65536,
          maximum: 67108864,
          default: 1048576,
          description:
            'Longest header section accepted: the header is held in memory and parsed once. A longer one is refused with 552 5.3.4, never read as body (header fields past the limit would escape every check, and Postfix keeps them as header fields).',
        },
      },
    },
    decoders: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description:
        "External unpackers for the archive formats postseal does not read itself (amavisd-new's @decoders): The Unarchiver's lsar and unar (Debian package unar) list and extract RAR, 7-Zip, Microsoft Cabinet, xz, bzip2, ISO 9660 images and BinHex (hqx), so the banned stage checks their members' names and types as it does a zip's. zip, tar and gzip are read in-process whatever this says. docs/content-checks.md \"Archives read by unar\".",
      properties: {
        use: {
          type: 'string',
          enum: ['auto', 'unar', 'off'],
          default: 'auto',
          description:
            'auto = use lsar and unar when both are installed at lsarPath and unarPath, else a CFG_DECODERS_MISSING warning at start-up and those formats are checked by their own name and type only (as with off); unar = use them, and refuse to start (CFG_DECODERS_UNUSABLE) when they do not run; off = do not unpack those formats.',
        },
        lsarPath: { type: 'string', default: '/usr/bin/lsar', description: 'The lsar command (absolute path).' },
        unarPath: { type: 'string', default: '/usr/bin/unar', description: 'The unar command (absolute path).' },
        formats: {
          type: 'array',
          uniqueItems: true,
          items: { type: 'string', enum: ['rar', '7z', 'cab', 'xz', 'bz2', 'iso', 'hqx'] },
          default: ['rar', '7z', 'cab', 'xz', 'bz2', 'iso', 'hqx'],
          description: 'Which formats (by their detected type, magic bytes) go to unar (lib/archive/external.ts EXTERNAL_FORMATS, a test keeps the two lists one).',
        },
        maxProcesses: {
          type: 'integer',
          minimum: 1,
          maximum: 64,
          default: 2,
          description: 'lsar and unar runs at once per worker process, across all messages; more wait for a free one within the stage time limit.',
        },
        timeoutMs: {
          type: 'integer',
          minimum: 1000,
          maximum: 600000,
          default: 20000,
          description: 'Longest one lsar or unar run may take; it is then killed and the archive is a BANNED_LIMIT_EXCEEDED finding (time limit; banned.onLimit decides).',
        },
      },
    },
    store: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description:
        'Shared state (the DMARC result history for aggregate reports): one sqlite file for one host and all its workers, or Redis for several hosts. Opened once at start-up; SIGHUP does not reopen it (restart to apply a change).',
      properties: {
        backend: {
          type: 'string',
          enum: ['sqlite', 'redis'],
          default: 'sqlite',
          description: 'sqlite for one host (any number of workers); redis when several hosts must share the state.',
        },
        keyPrefix: {
          type: 'string',
          maxLength: 100,
          default: 'postseal:',
          description: 'Put before every key, so that several postseal installations (or other programs) can share one Redis database or sqlite file without seeing each other.',
        },
        sqlite: {
          type: 'object',
          additionalProperties: false,
          default: {},
          description: 'The sqlite back-end (node:sqlite, WAL mode).',
          properties: {
            file: {
              type: 'string',
              minLength: 1,
              default: 'postseal.db',
              description:
                'Database file, relative to this file (so the default is postseal.db next to it; a package install would set e.g. /var/lib/postseal/postseal.db). Its folder must exist and be writable (CFG_STORE_UNUSABLE otherwise); the file is created with mode 0600, with -wal and -shm files beside it.',
            },
            busyTimeoutMs: {
              type: 'integer',
              minimum: 0,
              maximum: 60000,
              default: 5000,
              description:
                'How long a write waits for another worker holding the file lock before the operation fails (STORE_UNAVAILABLE). At start-up, opening the file is retried for three times this, at least 15 s, before the worker gives up (CFG_STORE_UNUSABLE).',
            },
          },
        },
        redis: {
          type: 'object',
          additionalProperties: false,
          default: {},
          description: 'The Redis back-end (Redis 7.0 or newer).',
          properties: {
            url: {
              type: 'string',
              pattern: '^rediss?://',
              default: 'redis://127.0.0.1:6379/0',
              description:
                'redis://[user:password@]host:port/database, or rediss:// for TLS. Unreachable at start-up, postseal starts anyway and logs it; operations fail (STORE_UNAVAILABLE) until Redis is back. Start-up, reload and `config check` warn (CFG_STORE_NOT_ANSWERING) and /readyz answers 503 while it does not answer PING (down, wrong port, password or database number).',
            },
            timeoutMs: {
              type: 'integer',
              minimum: 50,
              maximum: 60000,
              default: 2000,
              description: 'Longest wait for a connection or a reply; then the operation fails (STORE_UNAVAILABLE).',
            },
          },
        },
      },
    },
    quarantine: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description:
        'Where messages with a quarantine verdict are held (docs/quarantine.md): each as received, with its envelope and findings, in a file of its own; an index in the store (store section) lists them for `postseal quarantine list|show|release|delete`.',
      properties: {
        dir: {
          type: 'string',
          minLength: 1,
          default: 'quarantine',
          description:
            'Folder of the held messages, relative to this file (so the default is quarantine/ next to it; a package install would set e.g. /var/lib/postseal/quarantine). Created with mode 0700 at start-up if missing; files are written with mode 0600, atomically (temp file, fsync, rename).',
        },
        maxMessageSizeBytes: {
          type: 'integer',
          minimum: 0,
          maximum: 2147483647,
          default: 0,
          description:
            "0 (the default) follows the bank's maxMessageSizeBytes: every message the bank accepts can be held. A larger message with a quarantine verdict is not held but refused with 550 5.7.1 and an error log line (a refusal is not a loss: Postfix bounces it to its sender; a 451 would keep it in the queue until it expires).",
        },
        maxTotalBytes: {
          type: 'integer',
          minimum: 0,
          maximum: 1099511627776000,
          default: 10737418240,
          description:
            'The most the held messages may take together (10 GiB by default; 0 no limit), counted in the store. When it is reached a message with a quarantine verdict is refused with 550 5.7.1 and an error log line, not tempfailed: a 451 would let an attacker grow the Postfix queue without end.',
        },
        minFreeBytes: {
          type: 'integer',
          minimum: 0,
          maximum: 1099511627776,
          default: 104857600,
          description:
            "Space that must stay free on the folder's file system; below it the folder counts as full and a quarantine verdict is tempfailed (451 4.3.0, logged) instead of filling the disk.",
        },
        maxAgeDays: {
          type: 'integer',
          minimum: 1,
          maximum: 3650,
          default: 30,
          description: 'Held messages older than this are removed by the sweep (amavisd sites ran a cron job for it).',
        },
        sweepIntervalMs: {
          type: 'integer',
          minimum: 1000,
          maximum: 86400000,
          default: 3600000,
          description:
            'How often each worker removes expired messages, leftover temp files and index entries without a file, and restores index entries of held files missing from the store.',
        },
      },
    },
    notify: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description:
        "Mail postseal writes about a message (docs/notifications.md): the DSN of a bounce destiny and the admin, recipient and sender notices the banks' notices sections ask for. It goes through the bank's notify target, DKIM-signed by postseal itself with the signing table's keys for the domain of `from` (that target, Postfix's 10027 reinjection smtpd, is after postseal's signing).",
      properties: {
        from: {
          type: 'string',
          default: '',
          maxLength: 254,
          pattern: '^([^\\s<>@]+@[A-Za-z0-9.-]+)?$',
          description:
            'From: and envelope sender of notices (notices to a sender go from <>); DSNs come from MAILER-DAEMON at its domain. Empty: postmaster@<hostname>. Give it a domain the signing table has a key for (e.g. postmaster@example.com), or notices and DSNs go unsigned (with a warning at start-up and a log line each).',
        },
        templateDir: {
          type: 'string',
          default: '',
          description:
            "Folder of the site's own notice templates, relative to this file (admin.txt, recipient.txt, sender.txt, and optionally admin-virus.txt and the like per category); a template it does not have comes from the English ones shipped in templates/notices/. Empty: the shipped ones only. Read at start-up and reload; an unknown placeholder refuses the configuration (CFG_TEMPLATE_INVALID).",
        },
        maxDsnPerHour: {
          type: 'integer',
          minimum: 1,
          maximum: 10000000,
          default: 1000,
          description:
            'DSNs of bounce destinies per hour, all hosts sharing the store together. Over it the DSN is not sent and the message is held in quarantine instead (dropped where the listener has no quarantine), with a warning in the log (a flood of bounces is backscatter).',
        },
        maxPerSenderDomainPerHour: {
          type: 'integer',
          minimum: 1,
          maximum: 10000000,
          default: 30,
          description:
            'DSNs to one envelope-sender domain per hour, and apart from them sender notices to it (a flood of bounces of forged senders of a domain must not silence the notices its authenticated senders are owed); over it, as maxDsnPerHour and maxNoticesPerHour.',
        },
        maxNoticesPerHour: {
          type: 'integer',
          minimum: 1,
          maximum: 10000000,
          default: 1000,
          description:
            'Notices per hour for each audience (admin, recipient and sender notices are counted apart, so a flood of one kind cannot silence the others), all hosts sharing the store together; over it a notice is not sent (logged), the message is handled all the same.',
        },
      },
    },
    log: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'Structured JSON log on standard output.',
      properties: {
        level: { type: 'string', enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace'], default: 'info', description: 'Lowest level written.' },
      },
    },
    shutdownGraceMs: {
      type: 'integer',
      minimum: 0,
      maximum: 3600000,
      default: 30000,
      description: 'On SIGTERM, mail in flight gets this long to finish before the remaining sessions are cut (Postfix retries them).',
    },
    services: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'Side services that run beside the listeners.',
      properties: {
        metrics: {
          type: 'object',
          additionalProperties: false,
          default: {},
          description:
            'Prometheus metrics and health checks over HTTP: GET /metrics, /healthz, /readyz (README, "Metrics and health"). With several workers the primary serves it, summing the workers\' metrics.',
          properties: {
            enabled: { type: 'boolean', default: false, description: 'Serve the metrics and health endpoints.' },
            address: {
              type: 'string',
              minLength: 1,
              default: '127.0.0.1',
              description: 'Address to listen on. The endpoints have no authentication: keep them on loopback or a monitoring network.',
            },
            port: {
              type: 'integer',
              minimum: 0,
              maximum: 65535,
              default: 9205,
              description: 'TCP port (0: any free port, for tests). A reload that changes address or port moves the listener.',
            },
          },
        },
        srs: {
          type: 'object',
          additionalProperties: false,
          default: {},
          description:
            'Sender Rewriting Scheme maps for Postfix (README, "Forwarding and SRS"): forward for sender_canonical_maps, reverse for recipient_canonical_maps, as socketmap (one port, map names "forward" and "reverse") and as tcp_table (one port each). Replaces postsrsd. Runs in every worker.',
          properties: {
            enabled: { type: 'boolean', default: false, description: 'Serve the SRS maps. Read at start-up; a reload applies the other settings (secrets, ports, domains).' },
            address: {
              type: 'string',
              minLength: 1,
              default: '127.0.0.1',
              description: 'Address to listen on. The reverse map turns addresses into recipients: keep it on loopback.',
            },
            socketmapPort: {
              type: 'integer',
              minimum: 0,
              maximum: 65535,
              default: 10003,
              description: 'Port of the socketmap service (socketmap:inet:127.0.0.1:10003:forward and :reverse). 0: any free port, for tests.',
            },
            tcpForwardPort: { type: 'integer', minimum: 0, maximum: 65535, default: 10001, description: 'Port of the forward tcp_table (tcp:127.0.0.1:10001, as postsrsd).' },
            tcpReversePort: { type: 'integer', minimum: 0, maximum: 65535, default: 10002, description: 'Port of the reverse tcp_table (tcp:127.0.0.1:10002, as postsrsd).' },
            domain: {
              type: 'string',
              default: '',
              description: 'Domain of the rewritten senders (SRS0=...@domain); its MX must be this Postfix, and its SPF record must allow it to send. Required when enabled.',
            },
            secretsFile: {
              type: 'string',
              default: '/etc/postseal/srs-secrets',
              description:
                'File of secrets, one a line, relative to this file: the first signs, every line verifies (put a new one on top, drop the old after maxAgeDays). Must exist, hold a secret and not be readable by everyone (CFG_SRS_SECRETS). Re-read on reload.',
            },
            localDomains: {
              type: 'array',
              items: { type: 'string', minLength: 1 },
              default: [],
              description: 'Senders of these domains are not rewritten (our own mail passes SPF as it is). ".example.org" matches the subdomains of example.org.',
            },
            excludeDomains: {
              type: 'array',
              items: { type: 'string', minLength: 1 },
              default: [],
              description: 'Further domains whose senders are not rewritten (postsrsd -X), with the same ".example.org" form.',
            },
            hashLength: { type: 'integer', minimum: 4, maximum: 27, default: 4, description: 'Base64 characters of HMAC-SHA1 hash written into an address (postsrsd -n).' },
            hashMin: { type: 'integer', minimum: 4, maximum: 27, default: 4, description: 'Fewest hash characters accepted when reversing (postsrsd -N); at most hashLength.' },
            maxAgeDays: {
              type: 'integer',
              minimum: 1,
              maximum: 1000,
              default: 21,
              description: 'Days an SRS0 address reverses after it was made; a bounce that comes later is refused.',
            },
            separator: { type: 'string', enum: ['=', '+', '-'], default: '=', description: 'Separator after SRS0 / SRS1 (postsrsd -a).' },
            maxConnections: {
              type: 'integer',
              minimum: 1,
              maximum: 100000,
              default: 4096,
              description: 'Connections each port accepts at once per process; more are closed at once (Postfix opens one per table per process).',
            },
            idleTimeoutMs: {
              type: 'integer',
              minimum: 1000,
              default: 300000,
              description: 'A connection with no complete request for this long is closed (Postfix reconnects when it next needs the map).',
            },
          },
        },
        dmarcReports: {
          type: 'object',
          additionalProperties: false,
          default: {},
          description:
            "DMARC reports (RFC 7489 7.2, 7.3, docs/dmarc-reports.md): once a report period is over (a UTC day, or shorter when the domain's `ri=` asks, see minIntervalSec), each policy domain's stored DMARC results of that period are mailed to the rua addresses of its DMARC record through the `notify` target of `bank`. Not a listener: runs in every worker, and a lock in the store makes one process (across hosts sharing Redis) send each report.",
          properties: {
            enabled: { type: 'boolean', default: false, description: 'Send aggregate reports (failure reports have their own switch, failureReports.enabled).' },
            bank: {
              type: 'string',
              minLength: 1,
              default: 'default',
              description:
                "The bank whose `notify` target carries the report mail (the originating reinjection port, so that Postfix's signing milter or the ORIGINATING bank signs it).",
            },
            orgName: { type: 'string', default: '', description: 'report_metadata org_name: who sends the reports; empty uses the hostname.' },
            email: { type: 'string', default: '', description: 'report_metadata email: where report recipients can write to; empty uses `from`.' },
            from: {
              type: 'string',
              default: '',
              description:
                "From: and envelope sender of report mail; empty uses dmarc-reports@<hostname>. Reports are DKIM-signed with the signing table's active keys for this address's domain (unsigned without one).",
            },
            submitter: { type: 'string', default: '', description: 'The Submitter in the subject and the receiver in the file name; empty uses the domain of `from`.' },
            checkIntervalMs: {
              type: 'integer',
              minimum: 1000,
              maximum: 86400000,
              default: 900000,
              description: 'How often to look for finished report periods with results to send (the first look is at start).',
            },
            minIntervalSec: {
              type: 'integer',
              minimum: 3600,
              maximum: 86400,
              default: 3600,
              description:
                "The shortest aggregate report period, in seconds. A domain's `ri=` chooses the longest UTC-aligned period of 1, 2, 3, 4, 6, 8, 12 or 24 hours that is not longer than ri; none is shorter than this value (rounded up to one of those periods) or longer than a day (no ri=: daily). A result's period is decided when it is stored, from the record the dmarc stage applied (docs/dmarc-reports.md). Read at start: a reload keeps the running value.",
            },
            maxReportsPerRun: {
              type: 'integer',
              minimum: 1,
              maximum: 100000,
              default: 1000,
              description: 'Reports (domain and period) handled per look at most; the rest wait for the next.',
            },
            lockTtlMs: {
              type: 'integer',
              minimum: 10000,
              maximum: 86400000,
              default: 600000,
              description: "A domain's period being reported is locked in the store for at most this long (a crashed sender's lock lapses).",
            },
            retryBaseMs: {
              type: 'integer',
              minimum: 1000,
              maximum: 86400000,
              default: 300000,
              description: 'First wait after a failed send or DNS lookup; it doubles with each failure.',
            },
            retryMaxMs: { type: 'integer', minimum: 1000, maximum: 604800000, default: 21600000, description: 'Longest wait between tries.' },
            graceSec: {
              type: 'integer',
              minimum: 0,
              maximum: 86400,
              default: 600,
              description:
                'Seconds after a report period ends before it is reported, so that a message received just before the end whose checks finish after it (or a host whose clock is a little behind) is still in its report.',
            },
            maxAttempts: {
              type: 'integer',
              minimum: 1,
              maximum: 1000,
              default: 12,
              description:
                "Failed tries (the domain's DNS failing, the notify target refusing) after which a report period's results are dropped (logged) rather than kept for the 31 days of retention.",
            },
            maxRowsPerReport: {
              type: 'integer',
              minimum: 100,
              maximum: 20000,
              default: 10000,
              description:
                "Rows (distinct source IP and result sets) per policy domain and report period: results are stored as a counter per row, and a period keeps at most this many rows; the messages of further rows are counted and the report says in report_metadata/error how many messages it does not itemize. Read at start for the store (a reload changes only the reports' own cap: the largest counts are kept).",
            },
            maxReportsPerDestinationPerDay: {
              type: 'integer',
              minimum: 1,
              maximum: 1000000,
              default: 10000,
              description:
                'Aggregate report mails per destination domain (the domain of a rua address) and UTC day, all policy domains and hosts together, so that forged DMARC records cannot aim a flood of reports at one mailbox (a reporting service that authorizes every domain); an address over it is skipped (logged with the report). Reports per organizational domain are bounded by maxPeriodsPerOrgDomain.',
            },
            maxDomainsPerDay: {
              type: 'integer',
              minimum: 1,
              maximum: 1000000,
              default: 10000,
              description:
                'Organizational domains (the registrable domain, by the public suffix list: example.com for a.b.example.com) whose DMARC results are kept per UTC day (all hosts sharing the store together); results for further ones that day are not kept (logged once a day), so that mail claiming many From domains cannot grow the store without bound. Subdomains count with their organizational domain, see maxPeriodsPerOrgDomain.',
            },
            maxPeriodsPerOrgDomain: {
              type: 'integer',
              minimum: 1,
              maximum: 1000000,
              default: 200,
              description:
                "Report periods (policy domain and period: a domain with `ri=3600` uses 24 a day) per organizational domain per UTC day; further ones that day are not kept (logged once a day), so that an attacker's thousands of subdomains use up only their own organizational domain's share.",
            },
            maxRecordsPerDay: {
              type: 'integer',
              minimum: 1,
              maximum: 100000000,
              default: 1000000,
              description: 'DMARC results (messages) counted per UTC day over all policy domains; further results that day are not kept (logged once a day).',
            },
            failureReports: {
              type: 'object',
              additionalProperties: false,
              default: {},
              description:
                "DMARC failure reports (RFC 7489 7.3, RFC 6591 AFRF, docs/dmarc-reports.md): for a message whose DMARC evaluation the domain's `fo=` asks about, a report with the header section (never the body) is mailed to the `ruf=` addresses of its record, through the same bank's `notify` target and signed like aggregate reports. Off by default; independent of `enabled` (which switches aggregate reports).",
              properties: {
                enabled: { type: 'boolean', default: false, description: 'Send failure reports.' },
                maxPerDomainPerHour: {
                  type: 'integer',
                  minimum: 1,
                  maximum: 100000,
                  default: 10,
                  description:
                    "Failure reports per organizational domain of the policy domain (example.com for a.b.example.com: an attacker's subdomains share one limit) and clock hour (UTC), counted before any DNS lookup, and the same number per destination domain (the domain of a ruf address, whatever the policy domains); counted in the store so that all workers and hosts sharing it share the limit; further ones are dropped (logged).",
                },
                maxPerHour: {
                  type: 'integer',
                  minimum: 1,
                  maximum: 1000000,
                  default: 200,
                  description: 'Failure reports per clock hour over all domains, counted in the store like maxPerDomainPerHour.',
                },
                maxQueued: {
                  type: 'integer',
                  minimum: 1,
                  maximum: 100000,
                  default: 200,
                  description:
                    'Reports waiting to be sent per process at most: the message path only queues them (it never waits for a report), and a report that finds the queue full is dropped (logged).',
                },
                redactLocalParts: {
                  type: 'boolean',
                  default: true,
                  description:
                    "Replace the local part of every address outside the reported domain with `redacted` (RFC 6590) in the copied header section, Original-Mail-From and Authentication-Results, so that your users' addresses (To, Cc, Delivered-To, a mailing list's VERP sender...) do not go to the domain owner. Addresses in the reported domain or below it are kept; anything not plainly in it (an 8-bit domain, an address literal, an encoded word hiding an address) is redacted.",
                },
                maxHeaderBytes: {
                  type: 'integer',
                  minimum: 1024,
                  maximum: 1048576,
                  default: 65536,
                  description: 'Largest header section copied into a report; a longer one is cut after the last whole field that fits.',
                },
              },
            },
          },
        },
        policy: {
          type: 'object',
          additionalProperties: false,
          default: {},
          description:
            'Postfix policy delegation server (SMTPD_POLICY_README) for `check_policy_service`: greylisting and SPF at RCPT time (docs/policy.md). Runs in every worker, sharing its state through the store.',
          properties: {
            enabled: { type: 'boolean', default: false, description: 'Serve policy requests.' },
            address: { type: 'string', minLength: 1, default: '127.0.0.1', description: 'Address to listen on (check_policy_service inet:127.0.0.1:10040).' },
            port: {
              type: 'integer',
              minimum: 0,
              maximum: 65535,
              default: 10040,
              description: 'TCP port (0: any free port, for tests). A reload that changes address, port or socket moves the listener.',
            },
            socket: {
              type: 'string',
              default: '',
              description:
                "A unix socket path to listen on instead of address and port; empty uses TCP. The socket is made mode 0666 (the folder decides who reaches it); with several workers the primary binds it. Inside Postfix's queue directory (check_policy_service unix:private/postseal-policy) postseal must be able to write that folder: with the shipped systemd unit add it to ReadWritePaths; TCP on loopback needs neither.",
            },
            maxConnections: {
              type: 'integer',
              minimum: 1,
              maximum: 100000,
              default: 2000,
              description: 'Connections served at once per process; more are closed at once (Postfix retries).',
            },
            maxRequestBytes: {
              type: 'integer',
              minimum: 1024,
              maximum: 1048576,
              default: 16384,
              description: 'Longest request (all its lines); a longer one is answered DEFER_IF_PERMIT and the connection closed.',
            },
            requestTimeoutMs: {
              type: 'integer',
              minimum: 100,
              maximum: 3600000,
              default: 10000,
              description: 'A request begun but not finished within this time closes the connection.',
            },
            idleTimeoutMs: {
              type: 'integer',
              minimum: 100,
              maximum: 86400000,
              default: 330000,
              description: 'A connection with no request for this long is closed (Postfix closes its own after 300 s).',
            },
            decisionTimeoutMs: {
              type: 'integer',
              minimum: 50,
              maximum: 600000,
              default: 8000,
              description:
                "Longest time to decide one request (SPF lookups, store); past it the answer is DEFER_IF_PERMIT. Keep it below Postfix's smtpd_policy_service_timeout (100 s).",
            },
            skipNetworks: {
              type: 'array',
              items: { type: 'string' },
              default: [],
              description: 'Client networks (CIDR; your mynetworks, relays, secondary MXes) that get DUNNO without SPF or greylisting.',
            },
            skipSasl: { type: 'boolean', default: true, description: 'SASL-authenticated clients (sasl_username set) get DUNNO without SPF or greylisting.' },
            greylist: {
              type: 'object',
              additionalProperties: false,
              default: {},
              description: "Greylisting with postgrey 1.37's triplets, timing and whitelist files.",
              properties: {
                enabled: { type: 'boolean', default: true, description: 'Greylist (postgrey --delay etc. below).' },
                delaySec: { type: 'integer', minimum: 1, maximum: 86400, default: 300, description: 'Seconds a new triplet must wait before a retry passes (postgrey --delay).' },
                retryWindowSec: {
                  type: 'integer',
                  minimum: 60,
                  maximum: 2592000,
                  default: 172800,
                  description:
                    'A triplet not retried successfully within this time starts over (postgrey --retry-window, 2 days). Must be longer than delaySec (CFG_INCONSISTENT otherwise).',
                },
                maxAgeDays: {
                  type: 'integer',
                  minimum: 1,
                  maximum: 3650,
                  default: 35,
                  description: 'A passed triplet or auto-whitelisted client unused this long is forgotten (postgrey --max-age).',
                },
                ipv4PrefixBits: {
                  type: 'integer',
                  minimum: 0,
                  maximum: 32,
                  default: 24,
                  description: 'Client network of an IPv4 client (postgrey --ipv4cidr); 32 is one address.',
                },
                ipv6PrefixBits: { type: 'integer', minimum: 0, maximum: 128, default: 64, description: 'Client network of an IPv6 client (postgrey --ipv6cidr).' },
                autoWhitelistClients: {
                  type: 'integer',
                  minimum: 0,
                  maximum: 1000,
                  default: 5,
                  description:
                    'A client whose triplets passed this many times (at most once an hour counted) passes from then on (postgrey --auto-whitelist-clients); 0 turns it off.',
                },
                maxNewTripletsPerClientHour: {
                  type: 'integer',
                  minimum: 0,
                  maximum: 100000000,
                  default: 10000,
                  description:
                    'New triplets stored per client and hour (an IPv4 client by its address, so a neighbour in its /24 cannot use up its share; an IPv6 client by its ipv6PrefixBits network); past it, further new triplets of that client are greylisted without being stored, so a client making up senders or recipients cannot grow the store without bound. 0 = no cap (postgrey has none).',
                },
                whitelistClientFiles: {
                  type: 'array',
                  items: { type: 'string', minLength: 1 },
                  default: [],
                  description: 'postgrey whitelist_clients files (names, /regexps/, addresses and networks), relative to this file; read at start and on SIGHUP.',
                },
                whitelistRecipientFiles: {
                  type: 'array',
                  items: { type: 'string', minLength: 1 },
                  default: [],
                  description: 'postgrey whitelist_recipients files (user@domain, user@, domain, /regexps/), relative to this file; read at start and on SIGHUP.',
                },
                skipRecipients: {
                  type: 'array',
                  items: { type: 'string', minLength: 1 },
                  default: ['postmaster@', 'abuse@'],
                  description: 'Recipients never greylisted, in the whitelist_recipients syntax.',
                },
                skipSpfPassDomains: {
                  type: 'array',
                  items: { type: 'string', minLength: 1 },
                  default: [],
                  description: 'Sender domains whose mail is not greylisted when it passes SPF (needs spf.enabled).',
                },
                text: {
                  type: 'string',
                  default: 'Greylisted, try again in %s seconds (after %t)',
                  description: 'Text after "450 4.7.1": %s = seconds still to wait, %t = the UTC time from which a retry passes, %r = the recipient domain.',
                },
                header: {
                  type: 'string',
                  default: 'X-Greylist: delayed %t seconds by postseal at %h; %d',
                  description: 'Field prepended when a triplet passes after a delay: %t seconds, %h our host name, %d the date (RFC 5322). Empty adds none.',
                },
              },
            },
            spf: {
              type: 'object',
              additionalProperties: false,
              default: {},
              description: 'SPF (RFC 7208) of HELO and MAIL FROM at RCPT time, once per message, as postfix-policyd-spf-python does.',
              properties: {
                enabled: { type: 'boolean', default: true, description: 'Check SPF.' },
                heloCheck: { type: 'boolean', default: true, description: 'Check the HELO identity too; a HELO fail is rejected like a MAIL FROM fail.' },
                rejectOn: {
                  type: 'array',
                  items: { type: 'string', enum: ['fail', 'softfail', 'permerror'] },
                  default: ['fail'],
                  description: 'Results answered "550 5.7.23" (RFC 7372). policyd-spf rejects fail only.',
                },
                temperror: {
                  type: 'string',
                  enum: ['defer', 'accept'],
                  default: 'defer',
                  description: 'A DNS error: "defer" answers DEFER_IF_PERMIT 4.4.3; "accept" adds Received-SPF: temperror (policyd-spf\'s default).',
                },
                receivedSpf: { type: 'boolean', default: true, description: 'Prepend Received-SPF (RFC 7208 section 9.1) with the result.' },
                skipNetworks: {
                  type: 'array',
                  items: { type: 'string' },
                  default: [],
                  description: 'Client networks (CIDR) whose mail is not SPF-checked (forwarders, secondary MXes).',
                },
              },
            },
          },
        },
      },
    },
    workers: {
      type: 'integer',
      minimum: 0,
      maximum: 256,
      default: 0,
      description:
        'Processes that serve the listeners (Node cluster; each runs every stage). 0 = one per CPU core; 1 = no cluster, one process. Read at start-up only; `postseal start --workers` overrides it.',
    },
    workerSemiSpaceMb: {
      type: 'integer',
      minimum: 1,
      maximum: 256,
      default: 8,
      description:
        "Size of V8's young-generation semi-spaces in each worker process, in MB (node's --max-semi-space-size), given to the workers by the primary when `workers` is above 1. Larger means fewer, longer scavenges and more memory; bench/README.md (\"Tail latency\") has the measurements. A semi-space size on node's own command line or in NODE_OPTIONS wins. A single process (workers 1) runs with node's own default. Read at start-up only.",
    },
    workerInitialOldSpaceMb: {
      type: 'integer',
      minimum: 0,
      maximum: 4096,
      default: 128,
      description:
        "Initial size of V8's old generation in each worker process, in MB (node's --initial-old-space-size), given to the workers by the primary when `workers` is above 1; 0 = node's own. Fewer early mark-compact collections under load, so a lower tail latency, for more peak memory; bench/README.md (\"Tail latency\") has the measurements. The flag on node's own command line wins (NODE_OPTIONS does not take it); a --max-old-space-size given to node caps it. A single process (workers 1) runs with node's own default. Read at start-up only.",
    },
  },
} as const;

export type MainConfig = FromSchema<typeof mainConfigSchema>;
type SchemaListener = MainConfig['listeners'][number];
/**
 * A listener as the schema makes it; `milter` (always filled in by its default when loaded) is
 * optional here so that SMTP listeners made in code (tests, tools) need not spell it.
 */
export type ListenerConfig = Omit<SchemaListener, 'milter'> & { readonly milter?: SchemaListener['milter'] };
export type BankRulesConfig = MainConfig['bankRules'];
