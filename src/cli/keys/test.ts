/**
 * `postseal keys test [DOMAIN...]` (amavisd testkeys): checks every configured key against
 * its published record (keys/key-test.ts), one line per key; exit 1 when any fails.
 */
import { loadOrExplain, parse } from '../args';
import { runKeyTests, selectKeys } from './common';

export const usage = 'keys test [DOMAIN...] [--config FILE]';

export const help = `Usage: postseal keys test [DOMAIN...] [--config FILE]

For every key of the key table (or those with d=DOMAIN), whatever its state: looks up the
TXT record S._domainkey.D through the configured resolver (dns.servers), checks that it
parses as a DKIM key record, that it publishes this private key's public key, its flags
and key size, then signs a test message with the key and verifies it against the record.
One line per key: "ok", "warn" (t=y still set, RSA under 2048 bits) or "FAIL", the record,
the key, and codes (KEY_MISSING, KEY_MISMATCH, KEY_TRUNCATED, KEY_INVALID, KEY_REVOKED,
KEY_AMBIGUOUS, KEY_DNS_TEMPERROR, KEY_SIGNATURE_FAILED, KEY_TESTING, KEY_WEAK, KEY_OK).
Exit status: 0 when no key failed, 1 otherwise (or when the config cannot be read).`;

export async function run(args: string[]): Promise<number> {
  const { values, positionals, help: h } = parse(args, { config: { type: 'string', short: 'c' } }, help);
  if (h) {
    process.stdout.write(`${h}\n`);
    return 0;
  }
  const config = loadOrExplain(values.config);
  if (!config) return 1;
  const keys = selectKeys(config, positionals);
  if (!keys) return 1;
  return (await runKeyTests(config, keys)) ? 0 : 1;
}
