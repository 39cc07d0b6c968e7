/**
 * A real DNS server on loopback (UDP and TCP on the same port) answering from a declarative
 * zone, for tests of the resolver and of every check that looks things up. It behaves like a
 * recursive server (follows CNAMEs inside the zone) unless told not to, and can be told to
 * misbehave per name (and optionally per query type): drop the query (timeout), SERVFAIL,
 * REFUSED, or truncate UDP answers.
 *
 *   const dns = await startDnsServer({ 'sel._domainkey.example.org': { TXT: ['v=DKIM1; p=...'] } });
 *   // resolver servers: [dns.server]  ("127.0.0.1:PORT")
 *
 * Names are lower case without the trailing dot. A name that is absent but has names below
 * it in the zone answers NODATA (an empty non-terminal), any other absent name NXDOMAIN.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import dnsPacket, { type Answer, type Packet } from 'dns-packet';

export interface ZoneEntry {
  A?: string[];
  AAAA?: string[];
  /** Each TXT record is one string, or its character-strings as given. */
  TXT?: (string | string[])[];
  MX?: [preference: number, exchange: string][];
  CNAME?: string;
  PTR?: string[];
  NS?: string[];
  /** TTL of every record of this name; default 300. */
  ttl?: number;
  behaviour?: 'timeout' | 'servfail' | 'refused' | 'truncate';
  /** Only queries of these types misbehave (the others are answered); default: all types. */
  behaviourTypes?: string[];
}

export type Zone = Record<string, ZoneEntry>;

export interface DnsQueryLog {
  name: string;
  type: string;
  tcp: boolean;
}

export interface DnsServer {
  port: number;
  /** "127.0.0.1:PORT", as the resolver's `servers` option wants it. */
  server: string;
  /** Edit freely between queries. */
  zone: Zone;
  queries: DnsQueryLog[];
  /** false: answer a CNAME without the target's records, as an authoritative server for one zone does. */
  followCnames: boolean;
  close(): Promise<void>;
}

const NEGATIVE_TTL = 60;
const RCODE = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const;

export async function startDnsServer(zone: Zone = {}, opts: { followCnames?: boolean } = {}): Promise<DnsServer> {
  // The UDP port is the kernel's pick; its TCP twin may be taken by another process (every
  // test worker and tool picks ports): then both are given up and another pair is tried.
  let udp!: dgram.Socket;
  let tcp!: net.Server;
  let port = 0;
  const sockets = new Set<net.Socket>();
  for (let attempt = 0; ; attempt++) {
    udp = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', () => resolve()));
    port = (udp.address() as AddressInfo).port;
    tcp = net.createServer((sock) => {
      sockets.add(sock);
      sock.on('close', () => sockets.delete(sock));
      sock.on('error', () => undefined);
      let buf = Buffer.alloc(0);
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const len = buf.readUInt16BE(0);
          const reply = answer(server, buf.subarray(2, 2 + len), true);
          buf = buf.subarray(2 + len);
          if (reply) sock.write(Buffer.concat([u16(reply.length), reply]));
        }
      });
    });
    const bound = await new Promise<boolean>((resolve, reject) =>
      tcp.once('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' && attempt < 20 ? resolve(false) : reject(err))).listen(port, '127.0.0.1', () => resolve(true)),
    );
    if (bound) break;
    await new Promise<void>((r) => udp.close(() => r()));
  }
  const server: DnsServer = {
    port,
    server: `127.0.0.1:${port}`,
    zone,
    queries: [],
    followCnames: opts.followCnames ?? true,
    close: async () => {
      for (const s of sockets) s.destroy();
      await Promise.all([new Promise<void>((r) => udp.close(() => r())), new Promise<void>((r) => tcp.close(() => r()))]);
    },
  };
  udp.on('message', (msg, rinfo) => {
    const reply = answer(server, msg, false);
    if (reply) udp.send(reply, rinfo.port, rinfo.address);
  });
  return server;
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function answer(server: DnsServer, raw: Buffer, overTcp: boolean): Buffer | null {
  let query: Packet;
  try {
    query = dnsPacket.decode(raw);
  } catch {
    return null;
  }
  const q = query.questions?.[0];
  if (!q) return null;
  const name = q.name.toLowerCase().replace(/\.$/, '');
  server.queries.push({ name, type: q.type, tcp: overTcp });
  const base: Packet = { type: 'response', id: query.id, questions: [q] };
  const respond = (rcode: number, answers: Answer[] = [], extraFlags = 0, authorities: Answer[] = []) =>
    dnsPacket.encode({ ...base, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | extraFlags | rcode, answers, authorities });

  const answers: Answer[] = [];
  let current = name;
  for (let hop = 0; hop < 10; hop++) {
    const entry = server.zone[current];
    const behaviour = entry?.behaviourTypes && !entry.behaviourTypes.includes(q.type) ? undefined : entry?.behaviour;
    if (behaviour === 'timeout') return null;
    if (behaviour === 'servfail') return respond(RCODE.SERVFAIL);
    if (behaviour === 'refused') return respond(RCODE.REFUSED);
    if (!entry) {
      const nonTerminal = Object.keys(server.zone).some((n) => n.endsWith(`.${current}`));
      // A CNAME to a name that does not exist is NXDOMAIN with the chain (RFC 6604 3).
      if (!nonTerminal) return respond(RCODE.NXDOMAIN, answers, 0, [soa(current)]);
      break;
    }
    const ttl = entry.ttl ?? 300;
    if (entry.CNAME && q.type !== 'CNAME') {
      answers.push({ type: 'CNAME', name: current, ttl, data: entry.CNAME });
      if (!server.followCnames) break;
      current = entry.CNAME.toLowerCase();
      continue;
    }
    if (behaviour === 'truncate' && !overTcp) return respond(RCODE.NOERROR, [], dnsPacket.TRUNCATED_RESPONSE);
    answers.push(...records(current, entry, q.type, ttl));
    break;
  }
  return respond(RCODE.NOERROR, answers, 0, answers.length ? [] : [soa(name)]);
}

function records(name: string, e: ZoneEntry, type: string, ttl: number): Answer[] {
  switch (type) {
    case 'A':
    case 'AAAA':
    case 'PTR':
    case 'NS':
      return (e[type] ?? []).map((data) => ({ type, name, ttl, data }) as Answer);
    case 'CNAME':
      return e.CNAME ? [{ type: 'CNAME', name, ttl, data: e.CNAME }] : [];
    case 'TXT':
      return (e.TXT ?? []).map((t) => ({ type: 'TXT', name, ttl, data: typeof t === 'string' ? splitTxt(t) : t }));
    case 'MX':
      return (e.MX ?? []).map(([preference, exchange]) => ({ type: 'MX', name, ttl, data: { preference, exchange } }));
    default:
      return [];
  }
}

/** A TXT record longer than 255 octets is published as several character-strings. */
function splitTxt(text: string): Buffer[] {
  const bytes = Buffer.from(text, 'utf8');
  const parts: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += 255) parts.push(bytes.subarray(i, i + 255));
  return parts.length ? parts : [Buffer.alloc(0)];
}

function soa(name: string): Answer {
  const zoneName = name.split('.').slice(-2).join('.');
  return {
    type: 'SOA',
    name: zoneName,
    ttl: NEGATIVE_TTL,
    data: { mname: `ns.${zoneName}`, rname: `hostmaster.${zoneName}`, serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum: NEGATIVE_TTL },
  };
}
