/**
 * Postfix tcp_table protocol (tcp_table(5)) on one connection, one map per port as postsrsd
 * serves it: "get KEY\n" is answered "200 DATA\n" (found), "500 reason\n" (not found) or
 * "400 reason\n" (temporary error). KEY and DATA are %XX-encoded where they hold whitespace,
 * "%" or bytes outside printable ASCII. Requests may be pipelined; replies go out in order.
 *
 * Hand-written: no npm package serves tcp_table; a line longer than MAX_LINE_BYTES is refused
 * with 500 and the connection closed (without a newline there is nothing to resynchronise on).
 */
import type { Socket } from 'node:net';
import { MAX_KEY_BYTES, type LookupReply, type SrsLookup, type SrsMapName } from './lookup';
import { writeWithBackpressure } from './socketmap';

/** "get ", a key of MAX_KEY_BYTES entirely %-encoded, and the newline. */
export const MAX_LINE_BYTES = 4 + MAX_KEY_BYTES * 3 + 2;

export function serveTcpTable(socket: Socket, map: SrsMapName, lookup: SrsLookup, answered: () => void): void {
  let buf: Buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    const out: string[] = [];
    let nl: number;
    while ((nl = buf.indexOf(0x0a)) >= 0) {
      if (nl > MAX_LINE_BYTES) break;
      const line = buf.toString('latin1', 0, nl).replace(/\r$/, '');
      buf = buf.subarray(nl + 1);
      out.push(answer(line, map, lookup));
    }
    if (buf.indexOf(0x0a) > MAX_LINE_BYTES || (buf.indexOf(0x0a) < 0 && buf.length > MAX_LINE_BYTES)) {
      out.push('500 request too long\n');
      socket.end(out.join(''));
      socket.removeAllListeners('data');
      return;
    }
    if (out.length) {
      answered();
      writeWithBackpressure(socket, Buffer.from(out.join(''), 'latin1'));
    }
  });
}

function answer(line: string, map: SrsMapName, lookup: SrsLookup): string {
  if (!line.startsWith('get ')) return '500 unsupported request: only get\n';
  const key = decode(line.slice(4));
  if (key === undefined) return '500 malformed %-encoding in the key\n';
  return encode(lookup(map, key));
}

function encode(r: LookupReply): string {
  switch (r.status) {
    case 'found':
      return `200 ${percentEncode(r.value)}\n`;
    case 'notfound':
      return `500 ${percentEncode(r.reason)}\n`;
    case 'temp':
      return `400 ${percentEncode(r.reason)}\n`;
  }
}

/** %XX to bytes (UTF-8 or not: lookup.ts decides); undefined for a broken escape. */
function decode(s: string): Buffer | undefined {
  if (!s.includes('%')) return Buffer.from(s, 'latin1');
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '%') {
      const hex = s.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) return undefined;
      bytes.push(Number.parseInt(hex, 16));
      i += 2;
    } else bytes.push(s.charCodeAt(i));
  }
  return Buffer.from(bytes);
}

/** What tcp_table(5) requires encoded, on the UTF-8 bytes; returned as a latin1 string of bytes. */
function percentEncode(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) out += b <= 0x20 || b === 0x25 || b >= 0x7f ? `%${b.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(b);
  return out;
}
