/**
 * What the `postseal keys` subcommands and `config check --dns` share: choosing configured
 * keys by signing domain, and running `keys test` on them with the configured resolver.
 */
import type { LoadedConfig } from '../../setup';
import type { SigningKey } from '../../keys/key-store';
import { formatKeyTest, testKey, type KeyTestDeps } from '../../keys/key-test';
import { normalizeDomain } from '../../lib/author';
import { createDnsResolver } from '../../lib/dns';
import { settingsOf } from '../../pipeline/runner';
import { dkimSignStage } from '../../stages/dkim-sign';

/** The configured keys whose d= is one of `domains` (all keys without any); null, after saying why, when none match. */
export function selectKeys(config: LoadedConfig, domains: readonly string[]): SigningKey[] | null {
  const all = config.keys.keys;
  if (all.length === 0) {
    process.stderr.write(`postseal: ${config.file} configures no signing keys (dkimSign.keyTableFile and signingTableFile)\n`);
    return null;
  }
  if (domains.length === 0) return [...all];
  const wanted = domains.map(normalizeDomain);
  const unknown = wanted.filter((d) => !all.some((k) => k.domain === d));
  if (unknown.length) {
    process.stderr.write(`postseal: no key in ${config.keys.files!.keyTableFile} signs d=${unknown.join(', d=')}\n`);
    return null;
  }
  return all.filter((k) => wanted.includes(k.domain));
}

/**
 * The resolver's sockets and timers are unref'd so that a lookup nobody waits for cannot
 * hold a daemon; a command waiting for lookups must hold the process itself, or it exits
 * early with nothing printed.
 */
export async function holdingProcess<T>(work: Promise<T>): Promise<T> {
  const hold = setInterval(() => undefined, 60_000);
  try {
    return await work;
  } finally {
    clearInterval(hold);
  }
}

export function keyTestDeps(config: LoadedConfig): KeyTestDeps {
  // Any bank's signature options will do: the test is about the key and its record.
  const banks = [...config.banks.values()];
  const bank = banks.find((b) => b.stages.includes('dkim-sign')) ?? banks[0];
  return { resolver: createDnsResolver(config.main.dns), signature: settingsOf(dkimSignStage, bank).signature };
}

/** Tests the keys, one line each on standard output; true when none failed. */
export async function runKeyTests(config: LoadedConfig, keys: readonly SigningKey[]): Promise<boolean> {
  const deps = keyTestDeps(config);
  const results = await holdingProcess(Promise.all(keys.map((k) => testKey(k, deps))));
  for (const r of results) process.stdout.write(`${formatKeyTest(r)}\n`);
  return results.every((r) => r.passed);
}
