/**
 * The one DNS resolver every check uses (docs/architecture.md): a stub resolver that asks the
 * configured recursive servers (default: the system's, from /etc/resolv.conf), with a
 * timeout per try, retries over every server, TCP when a UDP answer is truncated (RFC 7766),
 * CNAME chains followed (also when a server returns only the CNAME), and a TTL-honouring
 * cache with a size bound; NXDOMAIN and NODATA are cached by the SOA minimum (RFC 2308).
 * Reads: dns.* of the main config. Reports each lookup (cache hit or not, its result and
 * latency) to the Telemetry it is given (lib/telemetry.ts; none by default).
 *
 * Why not node:dns's Resolver: it hides the TTL of TXT and MX answers (a TTL cache needs it)
 * and the CNAMEs of an answer. This one is built on dns-packet; results are typed (types.ts).
 */
import { randomInt } from 'node:crypto';
import dns from 'node:dns';
import net from 'node:net';
import dnsPacket, { type Answer, type DecodedPacket } from 'dns-packet';
import { noTelemetry, type Telemetry } from '../telemetry';
import { TtlCache } from './cache';
import { exchange as udpTcpExchange, type DnsServerAddress, type Exchange } from './transport';
import type { DnsResolver, DnsResult, RecordData, RecordType } from './types';

/** The `dns` section of the main configuration (config/main-schema.ts), as this module reads it. */
export interface DnsConfig {
  readonly servers: readonly string[];
  readonly timeoutMs: number;
  readonly retries: number;
  readonly cacheMaxEntries: number;
  readonly cacheMaxTtlSec: number;
}

const MAX_CNAME_HOPS = 8;
const EDNS_UDP_SIZE = 1232;
const RCODE_NOERROR = 0;
const RCODE_NXDOMAIN = 3;

type DataAnswer = Exclude<Answer, { type: 'OPT' }>;

export interface DnsResolverDeps {
  exchange?: Exchange;
  now?: () => number;
  telemetry?: Telemetry;
}

export function createDnsResolver(config: DnsConfig, deps: DnsResolverDeps = {}): DnsResolver {
  const servers = (config.servers.length ? config.servers : dns.getServers()).map(parseServer);
  if (!servers.length) servers.push({ host: '127.0.0.1', port: 53 });
  const ex = deps.exchange ?? udpTcpExchange;
  const cache = new TtlCache<DnsResult>(config.cacheMaxEntries, deps.now ?? Date.now);
  const inFlight = new Map<string, Promise<DnsResult>>();
  const telemetry = deps.telemetry ?? noTelemetry;

  /** One question, asked of each server in turn, `retries` more rounds after the first. */
  async function ask(name: string, type: RecordType): Promise<DecodedPacket | string> {
    let why = 'no server tried';
    for (let round = 0; round <= config.retries; round++) {
      for (const server of servers) {
        const query = dnsPacket.encode({
          type: 'query',
          id: randomInt(0, 65536),
          flags: dnsPacket.RECURSION_DESIRED,
          questions: [{ type, name, class: 'IN' }],
          additionals: [{ type: 'OPT', name: '.', udpPayloadSize: EDNS_UDP_SIZE } as Answer],
        });
        try {
          let reply = await ex(server, query, false, config.timeoutMs);
          if (reply.flag_tc) reply = await ex(server, query, true, config.timeoutMs);
          const rcode = (reply.flags ?? 0) & 0xf;
          if (rcode === RCODE_NOERROR || rcode === RCODE_NXDOMAIN) return reply;
          why = `${server.host}:${server.port} answered rcode ${rcode}`;
        } catch (err) {
          why = (err as Error).message;
        }
      }
    }
    return why;
  }

  async function lookup(name: string, type: RecordType): Promise<{ result: DnsResult; ttlSec: number }> {
    let current = name;
    let chainTtl = Infinity;
    let hops = 0;
    const tooLong = { result: { kind: 'temperror', reason: `CNAME chain of ${name} longer than ${MAX_CNAME_HOPS}` }, ttlSec: 0 } as const;
    for (;;) {
      const reply = await ask(current, type);
      if (typeof reply === 'string') return { result: { kind: 'temperror', reason: reply }, ttlSec: 0 };
      const answers = (reply.answers ?? []).filter((a): a is DataAnswer => a.type !== 'OPT' && (a.class === undefined || a.class === 'IN'));
      let target = current;
      while (type !== 'CNAME') {
        const alias = answers.find((a) => a.type === 'CNAME' && sameName(a.name, target));
        if (!alias || answers.some((a) => a.type === type && sameName(a.name, target))) break;
        if (++hops > MAX_CNAME_HOPS) return tooLong;
        chainTtl = Math.min(chainTtl, ttlOf(alias));
        target = normalise(alias.data as string);
      }
      const matches = answers.filter((a) => a.type === type && sameName(a.name, target));
      if (matches.length) {
        const ttlSec = Math.min(chainTtl, ...matches.map(ttlOf));
        return { result: { kind: 'answer', records: matches.map((a) => toData(type, a)), ttlSec }, ttlSec };
      }
      const negativeTtl = Math.min(chainTtl, negativeTtlOf(reply));
      if (((reply.flags ?? 0) & 0xf) === RCODE_NXDOMAIN) return { result: { kind: 'nxdomain' }, ttlSec: negativeTtl };
      if (target === current) return { result: { kind: 'nodata' }, ttlSec: negativeTtl };
      // The server gave the alias but not the target's records (it is not recursive for it).
      current = target;
    }
  }

  function cachedLookup(name: string, type: RecordType): Promise<DnsResult> {
    const key = `${type} ${name}`;
    const hit = cache.get(key);
    if (hit) {
      telemetry.dnsQuery(type, hit.kind, 0, true);
      return Promise.resolve(hit);
    }
    let pending = inFlight.get(key);
    if (!pending) {
      const started = performance.now();
      pending = lookup(name, type).then(({ result, ttlSec }) => {
        telemetry.dnsQuery(type, result.kind, performance.now() - started, false);
        if (result.kind !== 'temperror') cache.set(key, result, Math.min(ttlSec, config.cacheMaxTtlSec) * 1000);
        return result;
      });
      pending.finally(() => inFlight.delete(key)).catch(() => undefined);
      inFlight.set(key, pending);
    }
    return pending;
  }

  return {
    async query<T extends RecordType>(name: string, type: T, signal?: AbortSignal): Promise<DnsResult<T>> {
      const n = normalise(name);
      if (!validName(n)) return { kind: 'nxdomain' };
      // An aborted caller (its stage timed out) sends nothing; a lookup already in flight is
      // shared with other callers and finishes for them (and the cache).
      if (signal?.aborted) return { kind: 'temperror', reason: 'aborted' };
      const work = cachedLookup(n, type) as Promise<DnsResult<T>>;
      if (!signal) return work;
      let onAbort: () => void = () => undefined;
      const aborted = new Promise<DnsResult<T>>((resolve) => {
        onAbort = () => resolve({ kind: 'temperror', reason: 'aborted' });
        signal.addEventListener('abort', onAbort, { once: true });
      });
      try {
        return await Promise.race([work, aborted]);
      } finally {
        signal.removeEventListener('abort', onAbort);
      }
    },
  };
}

/** "127.0.0.1", "127.0.0.1:5353", "::1", "[::1]:5353". */
export function parseServer(spec: string): DnsServerAddress {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(spec);
  if (bracketed) return { host: bracketed[1], port: Number(bracketed[2] ?? 53) };
  if (net.isIPv6(spec)) return { host: spec, port: 53 };
  const [host, port] = spec.split(':');
  return { host, port: Number(port ?? 53) };
}

function normalise(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

function sameName(a: string, b: string): boolean {
  return normalise(a) === normalise(b);
}

/** RFC 1035 2.3.4 limits; anything else cannot exist in the DNS. */
function validName(name: string): boolean {
  return name.length > 0 && name.length <= 253 && name.split('.').every((l) => l.length > 0 && l.length <= 63);
}

function ttlOf(a: DataAnswer): number {
  return a.ttl ?? 0;
}

function negativeTtlOf(reply: DecodedPacket): number {
  const soa = (reply.authorities ?? []).find((a) => a.type === 'SOA');
  if (soa?.type !== 'SOA') return 0;
  return Math.min(ttlOf(soa), soa.data.minimum ?? 0);
}

function toData<T extends RecordType>(type: T, a: DataAnswer): RecordData[T] {
  if (type === 'TXT') return ([] as (string | Buffer)[]).concat((a.data as Buffer[]) ?? []).map((b) => b.toString()) as RecordData[T];
  if (type === 'MX') {
    const mx = a.data as { preference: number; exchange: string };
    return { exchange: normalise(mx.exchange), priority: mx.preference } as RecordData[T];
  }
  return (typeof a.data === 'string' && type !== 'A' && type !== 'AAAA' ? normalise(a.data) : a.data) as RecordData[T];
}
