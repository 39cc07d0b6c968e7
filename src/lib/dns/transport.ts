/**
 * One DNS exchange with one server over UDP or TCP (RFC 1035 4.2, RFC 7766): send the query,
 * wait for the reply with the same id and question, or give up after the timeout. UDP
 * replies from any other address or port are ignored, so an off-path reply cannot be taken
 * for the answer. Errors thrown here never leave src/lib/dns: the resolver turns them into
 * temperror results.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket, { type DecodedPacket } from 'dns-packet';

export interface DnsServerAddress {
  readonly host: string;
  readonly port: number;
}

export type Exchange = (server: DnsServerAddress, query: Buffer, tcp: boolean, timeoutMs: number, signal?: AbortSignal) => Promise<DecodedPacket>;

export const exchange: Exchange = (server, query, tcp, timeoutMs, signal) =>
  new Promise<DecodedPacket>((resolve, reject) => {
    const id = query.readUInt16BE(0);
    const question = dnsPacket.decode(query).questions?.[0];
    let cleanup: () => void = () => undefined;
    const finish = (err: Error | null, packet?: DecodedPacket) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      cleanup();
      if (err) reject(err);
      else resolve(packet!);
    };
    const onAbort = () => finish(new Error('aborted'));
    // A lookup nobody waits for any more (an aborted caller) must not keep the process alive.
    const timer = setTimeout(() => finish(new Error(`no reply from ${server.host}:${server.port} within ${timeoutMs} ms`)), timeoutMs).unref();
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) return onAbort();
    /** Returns false for a datagram that is not the reply to this query. */
    const accept = (buf: Buffer): boolean => {
      let packet: DecodedPacket;
      try {
        packet = dnsPacket.decode(buf);
      } catch {
        return false;
      }
      const q = packet.questions?.[0];
      if (packet.id !== id || packet.type !== 'response' || !q || !question) return false;
      if (q.name.toLowerCase() !== question.name.toLowerCase() || q.type !== question.type) return false;
      finish(null, packet);
      return true;
    };
    if (tcp) cleanup = overTcp(server, query, accept, (e) => finish(e));
    else cleanup = overUdp(server, query, accept, (e) => finish(e));
  });

function overUdp(server: DnsServerAddress, query: Buffer, accept: (b: Buffer) => boolean, fail: (e: Error) => void): () => void {
  const family = net.isIPv6(server.host) ? 'udp6' : 'udp4';
  const sock = dgram.createSocket(family);
  sock.unref();
  sock.on('error', fail);
  sock.on('message', (msg, rinfo) => {
    if (rinfo.port === server.port && sameHost(rinfo.address, server.host)) accept(msg);
  });
  sock.send(query, server.port, server.host, (err) => err && fail(err));
  return () => sock.close();
}

function overTcp(server: DnsServerAddress, query: Buffer, accept: (b: Buffer) => boolean, fail: (e: Error) => void): () => void {
  const sock = net.connect(server.port, server.host).unref();
  const len = Buffer.alloc(2);
  len.writeUInt16BE(query.length);
  sock.on('connect', () => sock.write(Buffer.concat([len, query])));
  let buf = Buffer.alloc(0);
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
      const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
      buf = buf.subarray(2 + msg.length);
      if (accept(msg)) return;
    }
  });
  sock.on('error', fail);
  sock.on('end', () => fail(new Error(`${server.host}:${server.port} closed the TCP connection without a reply`)));
  return () => sock.destroy();
}

function sameHost(a: string, b: string): boolean {
  const strip = (x: string) => x.replace(/^::ffff:/, '').toLowerCase();
  return strip(a) === strip(b);
}
