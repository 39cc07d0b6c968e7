/**
 * A downstream that answers each command from a script, for replies smtp-server cannot be
 * made to give (a refused DATA command, garbage, a 421 while idle).
 */
import net from 'node:net';
import type { AddressInfo } from 'node:net';

export type Script = Partial<Record<'GREETING' | 'EHLO' | 'XFORWARD' | 'MAIL' | 'RCPT' | 'DATA' | 'DOT' | 'RSET', string>>;

const defaults: Required<Script> = {
  GREETING: '220 scripted ESMTP',
  EHLO: '250-scripted\r\n250-PIPELINING\r\n250 8BITMIME',
  MAIL: '250 2.1.0 Ok',
  RCPT: '250 2.1.5 Ok',
  DATA: '354 go ahead',
  DOT: '250 2.0.0 Ok: queued as SCRIPTED',
  RSET: '250 2.0.0 Ok',
  XFORWARD: '250 2.0.0 Ok',
};

/**
 * `closeAfterDot`: drop the connection right after the reply to the final dot (a server that
 * dies mid-LMTP). `holdXforwardUntilMail`: answer XFORWARD only once MAIL has arrived too, so
 * a client that waits for the XFORWARD reply before it sends MAIL times out.
 */
export async function startScriptedServer(
  script: Script,
  opts: { closeAfterDot?: boolean; holdXforwardUntilMail?: boolean } = {},
): Promise<{ port: number; commands: string[]; close(): Promise<void> }> {
  const s = { ...defaults, ...script };
  const commands: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.write(`${s.GREETING}\r\n`);
    let buf = '';
    let inData = false;
    let heldXforward = 0;
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).replace(/\r$/, '');
        buf = buf.slice(nl + 1);
        if (inData) {
          if (line === '.') {
            inData = false;
            sock.write(`${s.DOT}\r\n`);
            if (opts.closeAfterDot) return void sock.destroySoon();
          }
          continue;
        }
        commands.push(line);
        const verb = line.split(/[ :]/)[0].toUpperCase();
        if (verb === 'QUIT') return void sock.end('221 bye\r\n');
        if (verb === 'XFORWARD' && opts.holdXforwardUntilMail) {
          heldXforward++;
          continue;
        }
        if (verb === 'MAIL') for (; heldXforward > 0; heldXforward--) sock.write(`${s.XFORWARD}\r\n`);
        const reply = verb === 'LHLO' ? s.EHLO : (s[verb as keyof Script] ?? '502 5.5.2 unknown');
        if (verb === 'DATA' && reply.startsWith('354')) inData = true;
        sock.write(`${reply}\r\n`);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    commands,
    close: () =>
      new Promise<void>((r) => {
        for (const x of sockets) x.destroy();
        server.close(() => r());
      }),
  };
}
