/**
 * A downstream that answers each command from a script, for replies smtp-server cannot be
 * made to give (a refused DATA command, garbage, a 421 while idle).
 */
import net from 'node:net';
import type { AddressInfo } from 'node:net';

export type Script = Partial<Record<'GREETING' | 'EHLO' | 'XFORWARD' | 'MAIL' | 'RCPT' | 'DATA' | 'DOT' | 'RSET' | 'BDAT' | 'BDAT_LAST', string>>;

const defaults: Required<Script> = {
  GREETING: '220 scripted ESMTP',
  EHLO: '250-scripted\r\n250-PIPELINING\r\n250 8BITMIME',
  MAIL: '250 2.1.0 Ok',
  RCPT: '250 2.1.5 Ok',
  DATA: '354 go ahead',
  DOT: '250 2.0.0 Ok: queued as SCRIPTED',
  RSET: '250 2.0.0 Ok',
  XFORWARD: '250 2.0.0 Ok',
  BDAT: '250 2.0.0 Ok: chunk received',
  BDAT_LAST: '250 2.0.0 Ok: queued as SCRIPTED',
};

/**
 * `closeAfterDot`: drop the connection right after the reply to the final dot (a server that
 * dies mid-LMTP). `holdRepliesUntil`: answer XFORWARD (and, for 'RCPT', MAIL) only once that
 * command has arrived too, so a client that waits for each reply before it sends the next
 * command times out: what a test of pipelining needs. `bdatErrorLimit`: after a refused BDAT
 * chunk, answer each later chunk of the transaction as Postfix's smtpd does (551, payload
 * skipped; postfix/src/smtpd/smtpd.c skip_bdat), each counting as an error, and at that many
 * errors answer 421 and hang up (smtpd_hard_error_limit, 20 by default).
 * `holdChunkRepliesUntilLast`: answer the chunks before BDAT LAST only once LAST has arrived.
 * `stopReadingAtData`: read nothing more once the message begins (at the first BDAT, or after
 * answering DATA with its scripted reply), never answer again.
 * `stopReadingAfterChunks`: read nothing more after that many BDAT chunks, and answer the last
 * of them (with the BDAT reply) only 300 ms later, once the client is waiting to write more.
 */
export async function startScriptedServer(
  script: Script,
  opts: {
    closeAfterDot?: boolean;
    holdRepliesUntil?: 'MAIL' | 'RCPT';
    bdatErrorLimit?: number;
    holdChunkRepliesUntilLast?: boolean;
    stopReadingAtData?: boolean;
    stopReadingAfterChunks?: number;
  } = {},
): Promise<{ port: number; commands: string[]; messages: Buffer[]; close(): Promise<void> }> {
  const holds = opts.holdRepliesUntil === 'RCPT' ? ['XFORWARD', 'MAIL'] : opts.holdRepliesUntil === 'MAIL' ? ['XFORWARD'] : [];
  const s = { ...defaults, ...script };
  const commands: string[] = [];
  /** Each message's octets as they arrived: after DATA (still dot-stuffed, without the final dot) or all BDAT chunks. */
  const messages: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.write(`${s.GREETING}\r\n`);
    let buf = '';
    let inData = false;
    let data = '';
    /** BDAT: octets of the current chunk still to come, and whether it is the LAST one. */
    let chunk: { left: number; last: boolean } | null = null;
    /** bdatErrorLimit: errors so far in this session, and whether a chunk of this transaction was refused. */
    let errors = 0;
    let bdatFailed = false;
    let chunksRead = 0;
    const held: string[] = [];
    sock.on('data', (d) => {
      if (sock.writableEnded) return;
      buf += d.toString('latin1');
      let nl: number;
      for (;;) {
        if (chunk) {
          const take = Math.min(chunk.left, buf.length);
          data += buf.slice(0, take);
          buf = buf.slice(take);
          chunk.left -= take;
          if (chunk.left > 0) return;
          const last = chunk.last;
          chunk = null;
          if (last) {
            messages.push(Buffer.from(data, 'latin1'));
            data = '';
          }
          if (opts.bdatErrorLimit !== undefined) {
            const reply = bdatFailed ? '551 5.0.0 Discarded after earlier error' : last ? s.BDAT_LAST : s.BDAT;
            if (!reply.startsWith('2')) errors++;
            bdatFailed = !last && !reply.startsWith('2');
            sock.write(`${reply}\r\n`);
            if (errors >= opts.bdatErrorLimit) return void sock.end('421 4.7.0 scripted Error: too many errors\r\n');
            continue;
          }
          if (opts.holdChunkRepliesUntilLast && !last) {
            held.push(`${s.BDAT}\r\n`);
            continue;
          }
          if (++chunksRead === opts.stopReadingAfterChunks) {
            sock.pause();
            const reply = `${last ? s.BDAT_LAST : s.BDAT}\r\n`;
            return void setTimeout(() => sock.writable && sock.write(reply), 300);
          }
          for (const r of held.splice(0)) sock.write(r);
          sock.write(`${last ? s.BDAT_LAST : s.BDAT}\r\n`);
          continue;
        }
        if ((nl = buf.indexOf('\n')) < 0) return;
        const line = buf.slice(0, nl).replace(/\r$/, '');
        buf = buf.slice(nl + 1);
        if (inData) {
          if (line === '.') {
            inData = false;
            messages.push(Buffer.from(data, 'latin1'));
            data = '';
            sock.write(`${s.DOT}\r\n`);
            if (opts.closeAfterDot) return void sock.destroySoon();
          } else data += `${line}\r\n`;
          continue;
        }
        commands.push(line);
        const verb = line.split(/[ :]/)[0].toUpperCase();
        const bdat = /^BDAT (\d+)( LAST)?$/i.exec(line);
        if (opts.stopReadingAtData && bdat) return void sock.pause();
        // After 354, so that the client starts the message and then finds nobody reading it.
        if (opts.stopReadingAtData && verb === 'DATA') {
          sock.write(`${s.DATA}\r\n`);
          return void sock.pause();
        }
        if (bdat) {
          chunk = { left: Number(bdat[1]), last: !!bdat[2] };
          continue;
        }
        if (verb === 'QUIT') return void sock.end('221 bye\r\n');
        const reply = verb === 'LHLO' ? s.EHLO : (s[verb as keyof Script] ?? '502 5.5.2 unknown');
        if (holds.includes(verb)) {
          held.push(`${reply}\r\n`);
          continue;
        }
        if (verb === opts.holdRepliesUntil) for (const r of held.splice(0)) sock.write(r);
        if (verb === 'DATA' && reply.startsWith('354')) inData = true;
        sock.write(`${reply}\r\n`);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    commands,
    messages,
    close: () =>
      new Promise<void>((r) => {
        for (const x of sockets) x.destroy();
        server.close(() => r());
      }),
  };
}
