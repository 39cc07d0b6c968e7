/**
 * JSON Schemas of the two signing files (OpenDKIM's KeyTable and SigningTable, in YAML):
 * the key table names each key (domain, selector, PEM file, algorithm, rotation state), the signing table
 * says which keys sign mail whose author (From) domain matches a rule. The only source of
 * their types (STYLE.md §7).
 */
import type { FromSchema } from 'json-schema-to-ts';

const DOMAIN = '^(?!-)[A-Za-z0-9-]{1,63}(?:\\.(?!-)[A-Za-z0-9-]{1,63})*\\.?$';

export const keyTableSchema = {
  $id: 'postseal:key-table',
  type: 'object',
  description: 'Signing keys by name.',
  propertyNames: { pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' },
  additionalProperties: {
    type: 'object',
    additionalProperties: false,
    required: ['domain', 'selector', 'keyFile', 'algorithm'],
    properties: {
      domain: { type: 'string', pattern: DOMAIN, description: 'd=, the signing domain (an A-label or U-label name).' },
      selector: { type: 'string', pattern: DOMAIN, description: 's=, the selector: the public key is the TXT record <selector>._domainkey.<domain>.' },
      keyFile: { type: 'string', minLength: 1, description: 'PEM private key (PKCS#8 or PKCS#1), relative to the key table file.' },
      algorithm: {
        type: 'string',
        enum: ['rsa-sha256', 'ed25519-sha256'],
        description: 'a=; must match the key: an RSA key of at least 1024 bits (RFC 8301), or an Ed25519 key (RFC 8463).',
      },
      domainKeys: {
        type: 'string',
        enum: ['off', 'nofws', 'simple'],
        default: 'off',
        description: 'Also sign with legacy DomainKeys (RFC 4870, rsa-sha1) with this canonicalization, for RSA keys; never verified by postseal.',
      },
      state: {
        type: 'string',
        enum: ['staged', 'active', 'retiring'],
        default: 'active',
        description:
          'Rotation: staged = published in DNS, not signing yet; active = signs; retiring = replaced, not signing, its record stays published while signed mail is in transit. `postseal keys activate` moves a key from staged to active and the active key of its domain and algorithm to retiring.',
      },
    },
  },
} as const;

export const signingTableSchema = {
  $id: 'postseal:signing-table',
  type: 'array',
  description: 'Rules that choose the keys for an author domain; an exact domain wins over *.parent rules, the nearest parent first.',
  items: {
    type: 'object',
    additionalProperties: false,
    required: ['author', 'keys'],
    properties: {
      author: {
        type: 'string',
        pattern: '^(\\*\\.)?[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)*\\.?$|^\\*$',
        description: 'The author (From) domain, or *.parent for every subdomain of parent (not parent itself). A catch-all is refused.',
      },
      keys: {
        type: 'array',
        minItems: 1,
        uniqueItems: true,
        items: { type: 'string', minLength: 1 },
        description: 'Names from the key table; each makes one signature (e.g. one RSA and one Ed25519).',
      },
      thirdParty: {
        type: 'boolean',
        default: false,
        description: 'Allow keys whose d= is neither the author domain nor a parent of it (signing for a customer domain); DMARC will not see them as aligned.',
      },
    },
  },
} as const;

export type KeyTable = FromSchema<typeof keyTableSchema>;
export type KeyTableEntry = KeyTable[string];
export type SigningTable = FromSchema<typeof signingTableSchema>;
export type DomainKeysMode = KeyTableEntry['domainKeys'];
export type KeyState = KeyTableEntry['state'];
