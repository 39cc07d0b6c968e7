/**
 * Postfix socketmap protocol (socketmap_table(5), Postfix >= 2.10) on one connection: each
 * request is a netstring "MAPNAME KEY", each reply a netstring "OK data", "NOTFOUND ",
 * "TEMP reason" or "PERM reason". Requests may be pipelined; replies go out in order.
 *
 * Hand-written: the npm netstring packages (netstring 0.3.0, @endo/netstring) are encoders and
 * async-iterator decoders with no request size cap; the framing here is a few lines, caps the
 * request (MAX_REQUEST_BYTES, 8 KB a connection at most), and answers malformed input with PERM
 * before closing (the stream cannot be resynchronised after a bad length).
 */
import type { Socket } from 'node:net';
import { MAX_KEY_BYTES, type LookupReply, type SrsLookup, type SrsMapName } from './lookup';

/**
 * Longest netstring read. Longer than any key we look up (MAX_KEY_BYTES): an address Postfix
 * can carry (its smtpd takes command lines of 2048 octets) gets "not found" and the mail leaves
 * unrewritten; a PERM here would make Postfix defer it again and again until it bounced.
 */
export const MAX_REQUEST_BYTES = 8 * MAX_KEY_BYTES;
/** Digits of the longest length prefix we accept. */
const MAX_LENGTH_DIGITS = String(MAX_REQUEST_BYTES * 4).length;

const MAPS: ReadonlySet<string> = new Set<SrsMapName>(['forward', 'reverse']);

export function serveSocketmap(socket: Socket, lookup: SrsLookup, answered: () => void): void {
  let buf: Buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    const out: Buffer[] = [];
    for (;;) {
      const r = nextRequest(buf);
      if (r === 'incomplete') break;
      if (typeof r === 'string') {
        out.push(netstring(`PERM ${r}`));
        socket.end(Buffer.concat(out));
        socket.removeAllListeners('data');
        return;
      }
      buf = buf.subarray(r.consumed);
      out.push(netstring(answer(r.request, lookup)));
    }
    if (out.length) {
      answered();
      writeWithBackpressure(socket, Buffer.concat(out));
    }
  });
}

/** A whole netstring's payload and how many bytes it took; 'incomplete'; or what is wrong with it. */
function nextRequest(buf: Buffer): { request: Buffer; consumed: number } | 'incomplete' | string {
  if (buf.length === 0) return 'incomplete';
  const colon = buf.indexOf(0x3a);
  const digits = colon < 0 ? buf.length : colon;
  for (let i = 0; i < digits; i++) if (buf[i]! < 0x30 || buf[i]! > 0x39) return 'malformed netstring length';
  if (digits > MAX_LENGTH_DIGITS) return 'request too long';
  if (colon < 0) return 'incomplete';
  if (colon === 0) return 'malformed netstring length';
  const len = Number(buf.toString('latin1', 0, colon));
  if (len > MAX_REQUEST_BYTES) return 'request too long';
  const end = colon + 1 + len;
  if (buf.length < end + 1) return 'incomplete';
  if (buf[end] !== 0x2c) return 'malformed netstring: no comma after the data';
  return { request: buf.subarray(colon + 1, end), consumed: end + 1 };
}

/** The key stays bytes until the lookup has checked they are UTF-8 (lookup.ts). */
function answer(request: Buffer, lookup: SrsLookup): string {
  const sp = request.indexOf(0x20);
  const name = request.toString('latin1', 0, sp < 0 ? request.length : sp);
  if (!MAPS.has(name)) return `PERM unknown map name "${name.slice(0, 40).replace(/[^\x20-\x7e]/g, '?')}": use forward or reverse`;
  if (sp < 0) return 'NOTFOUND ';
  return encode(lookup(name as SrsMapName, request.subarray(sp + 1)));
}

function encode(r: LookupReply): string {
  switch (r.status) {
    case 'found':
      return `OK ${r.value}`;
    case 'notfound':
      return 'NOTFOUND ';
    case 'temp':
      return `TEMP ${r.reason}`;
  }
}

function netstring(s: string): Buffer {
  const data = Buffer.from(s, 'utf8');
  return Buffer.concat([Buffer.from(`${data.length}:`, 'latin1'), data, Buffer.from(',', 'latin1')]);
}

/**
 * A client that pipelines requests but does not read replies would make us buffer without
 * bound: stop reading from it until it has taken what we wrote.
 */
export function writeWithBackpressure(socket: Socket, data: Buffer): void {
  if (!socket.write(data)) {
    socket.pause();
    socket.once('drain', () => socket.resume());
  }
}
