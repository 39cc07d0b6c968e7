/**
 * Mail loops through postseal's own listeners, found by address rather than by host string:
 * a bank whose `forward` (or `notify`) target is one of postseal's listeners would hand every
 * message back to itself, each pass opening another connection, until the pool and Postfix
 * give up (500 connections per message were seen with `forward: {host: localhost}` against a
 * listener on 127.0.0.1). Names are resolved with node:dns lookup (getaddrinfo, /etc/hosts
 * included, as the reinjection client resolves them); a listener on 0.0.0.0 matches every
 * local IPv4 address, one on :: every local address (Node binds :: dual-stack).
 *
 * Also warns about listeners other hosts can reach: postseal reinjects what it receives into
 * a Postfix smtpd that trusts it, so such a listener is an open relay unless something else
 * restricts who connects.
 *
 * Reads: listeners (main file), forward and notify of every bank. Fails with CFG_INCONSISTENT
 * naming the bank file and /forward; warns CFG_LISTENER_NOT_LOOPBACK, CFG_FORWARD_UNRESOLVED.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import path from 'node:path';
import { PostsealError, type ConfigWarning } from '../errors';
import type { ConfigFiles as LoadedConfig } from './load';

/** Every address a host name resolves to (an address literal resolves to itself). */
export type LookupAll = (host: string) => Promise<string[]>;

/** getaddrinfo has no timeout of its own; a start-up must not hang on a dead resolver. */
const LOOKUP_TIMEOUT_MS = 5000;

export const lookupAll: LookupAll = async (host) => {
  if (isIP(host)) return [host];
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${LOOKUP_TIMEOUT_MS} ms`)), LOOKUP_TIMEOUT_MS);
  });
  try {
    const found = await Promise.race([dnsLookup(host, { all: true }), timeout]);
    return found.map((a) => a.address);
  } finally {
    clearTimeout(timer);
  }
};

export interface LoopCheckDeps {
  lookup?: LookupAll;
  /** This host's addresses; os.networkInterfaces() by default. */
  localAddresses?: () => string[];
}

/** Refuses a bank that forwards to one of postseal's own listeners; returns warnings. */
export async function checkForwardLoops(config: LoadedConfig, deps: LoopCheckDeps = {}): Promise<ConfigWarning[]> {
  const lookup = deps.lookup ?? lookupAll;
  const local = new Set(
    (deps.localAddresses ?? interfaceAddresses)()
      .map(canonical)
      .filter((a): a is string => a !== null),
  );
  const warnings: ConfigWarning[] = [];
  const bound = await Promise.all(
    config.main.listeners.map(async (l) => {
      // listen() binds the first address a name resolves to; an unresolvable one fails there (LISTEN_FAILED).
      const first = await lookup(l.address).then(
        (a) => a[0],
        () => undefined,
      );
      return { listener: l, address: first === undefined ? null : canonical(first) };
    }),
  );
  for (const [name, bank] of config.banks) {
    const file = path.join(config.bankDir, `${name}.yaml`);
    for (const [pointer, target] of [
      ['/forward', bank.forward],
      ['/notify', bank.notify],
    ] as const) {
      if (!target) continue;
      let addresses: string[];
      try {
        addresses = await lookup(target.host);
      } catch (err) {
        warnings.push({
          code: 'CFG_FORWARD_UNRESOLVED',
          message: `${file}: ${pointer}/host: ${target.host} does not resolve (${(err as Error).message}), so it could not be compared with postseal's own listeners; mail will be deferred until it does`,
        });
        continue;
      }
      for (const { listener, address } of bound) {
        if (address === null || listener.port === 0 || listener.port !== target.port) continue;
        const hit = addresses.map(canonical).find((a) => a !== null && reaches(address, a, local));
        if (!hit) continue;
        throw new PostsealError(
          'CFG_INCONSISTENT',
          `${file}: ${pointer}: ${target.host}:${target.port}${hit === target.host ? '' : ` (${hit})`} is postseal's own listener ${listener.address}:${listener.port} (bank ${listener.bank}), a mail loop; point it at the Postfix reinjection smtpd (port 10025 or 10027 in examples/postfix/master.cf)`,
        );
      }
    }
  }
  config.main.listeners.forEach((l, i) => {
    const address = bound[i].address;
    if (address === null || isLoopback(address)) return;
    if (l.protocol === 'milter') {
      warnings.push({
        code: 'CFG_LISTENER_NOT_LOOPBACK',
        message: `${config.file}: /listeners/${i}/address: ${l.address} (bank ${l.bank}) accepts milter connections from other hosts, which can have postseal check or sign any message they send it (the milter protocol has no authentication); bind it to 127.0.0.1 unless Postfix runs on another host, and then restrict it with a firewall`,
      });
      return;
    }
    warnings.push({
      code: 'CFG_LISTENER_NOT_LOOPBACK',
      message: `${config.file}: /listeners/${i}/address: ${l.address} (bank ${l.bank}) accepts connections from other hosts, and postseal reinjects what it receives into a Postfix smtpd that trusts it: an open relay unless that smtpd restricts clients (smtpd_client_restrictions, mynetworks) or a firewall does; bind it to 127.0.0.1 unless Postfix runs on another host`,
    });
  });
  return warnings;
}

/** Whether a connection to `target` would reach a socket bound to `bound` (both canonical). */
function reaches(bound: string, target: string, local: ReadonlySet<string>): boolean {
  if (bound === target) return true;
  const isLocal = isLoopback(target) || local.has(target);
  if (bound === '0.0.0.0') return isLocal && isIP(target) === 4;
  if (bound === '::') return isLocal;
  return false;
}

function isLoopback(address: string): boolean {
  return address === '::1' || /^127\./.test(address);
}

function interfaceAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((a) => a.address.replace(/%.*$/, '')));
}

/**
 * One spelling per address: IPv6 compressed and lower-case (the URL parser's canonical form),
 * IPv4-mapped IPv6 as plain IPv4; null for anything that is not an address.
 */
export function canonical(address: string): string | null {
  const bare = address.replace(/%.*$/, '');
  const family = isIP(bare);
  if (family === 4) return bare;
  if (family !== 6) return null;
  const v6 = new URL(`http://[${bare}]`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(v6);
  if (!mapped) return v6;
  const [hi, lo] = [parseInt(mapped[1], 16), parseInt(mapped[2], 16)];
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}
