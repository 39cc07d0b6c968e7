/**
 * A loopback DNS server for the benchmark's DKIM keys, SPF and DMARC records (RFC 1035 over
 * UDP, TXT only): enough for postseal's resolver and amavisd-new's Net::DNS, with no outside
 * lookups. Names it does not hold are NXDOMAIN; a held name asked for another type is NODATA.
 * Negative answers carry an SOA, as a real server's do, so resolvers cache them (RFC 2308)
 * instead of asking again for every message.
 */
import dgram from 'node:dgram';

export interface DnsServer {
  readonly port: number;
  close(): Promise<void>;
}

const TYPE_TXT = 16;
const TYPE_SOA = 6;
const TTL_SEC = 300;

/** `records` maps a name to its TXT values; each value is split into 255-octet strings. */
export async function startDnsServer(records: ReadonlyMap<string, readonly string[]>): Promise<DnsServer> {
  const zone = new Map([...records].map(([name, values]) => [name.toLowerCase().replace(/\.$/, ''), values]));
  const socket = dgram.createSocket('udp4');
  socket.on('message', (query, peer) => {
    const reply = answer(query, zone);
    if (reply) socket.send(reply, peer.port, peer.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return {
    port: socket.address().port,
    close: () => new Promise((resolve) => socket.close(() => resolve())),
  };
}

function answer(query: Buffer, zone: ReadonlyMap<string, readonly string[]>): Buffer | null {
  if (query.length < 12 || query.readUInt16BE(4) !== 1) return null;
  const labels: string[] = [];
  let pos = 12;
  while (pos < query.length && query[pos] !== 0) {
    const len = query[pos];
    if (len > 63) return null;
    labels.push(query.subarray(pos + 1, pos + 1 + len).toString('latin1'));
    pos += 1 + len;
  }
  const questionEnd = pos + 5;
  if (questionEnd > query.length) return null;
  const qtype = query.readUInt16BE(pos + 1);
  const values = zone.get(labels.join('.').toLowerCase());
  const answers = values && qtype === TYPE_TXT ? values.map(txtRecord) : [];
  const authority = answers.length ? [] : [soaRecord(labels)];
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.readUInt16BE(0), 0);
  // QR, opcode 0, AA, the query's RD, RA; rcode NXDOMAIN (3) for names we do not hold.
  header.writeUInt16BE(0x8400 | ((query[2] & 0x01) << 8) | 0x0080 | (values ? 0 : 3), 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(answers.length, 6);
  header.writeUInt16BE(authority.length, 8);
  return Buffer.concat([header, query.subarray(12, questionEnd), ...answers, ...authority]);
}

/** The SOA of the name's zone (its last two labels), minimum TTL_SEC: how long "no" holds. */
function soaRecord(labels: readonly string[]): Buffer {
  const zone = encodeName(labels.slice(-2));
  const rdata = Buffer.concat([encodeName(['ns', ...labels.slice(-2)]), encodeName(['hostmaster', ...labels.slice(-2)]), Buffer.alloc(20)]);
  for (const [i, v] of [1, 3600, 600, 86400, TTL_SEC].entries()) rdata.writeUInt32BE(v, rdata.length - 20 + 4 * i);
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(TYPE_SOA, 0);
  fixed.writeUInt16BE(1, 2);
  fixed.writeUInt32BE(TTL_SEC, 4);
  fixed.writeUInt16BE(rdata.length, 8);
  return Buffer.concat([zone, fixed, rdata]);
}

function encodeName(labels: readonly string[]): Buffer {
  return Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')])), Buffer.from([0])]);
}

function txtRecord(value: string): Buffer {
  const text = Buffer.from(value, 'utf8');
  const parts: Buffer[] = [];
  for (let i = 0; i < text.length || i === 0; i += 255) {
    const chunk = text.subarray(i, i + 255);
    parts.push(Buffer.from([chunk.length]), chunk);
  }
  const rdata = Buffer.concat(parts);
  const fixed = Buffer.alloc(12);
  fixed.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's
  fixed.writeUInt16BE(TYPE_TXT, 2);
  fixed.writeUInt16BE(1, 4); // IN
  fixed.writeUInt32BE(TTL_SEC, 6);
  fixed.writeUInt16BE(rdata.length, 10);
  return Buffer.concat([fixed, rdata]);
}
