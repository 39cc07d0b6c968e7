import net, { type AddressInfo } from 'node:net';
import { startHarness } from '../helpers/postseal';
import { TestClient } from '../helpers/smtp-client';

const msg = 'From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n';

/**
 * A downstream that announces PIPELINING and XFORWARD and answers XFORWARD only once MAIL
 * has arrived too: a client that waits for the XFORWARD reply before sending MAIL times out.
 */
async function pipeliningDownstream(xforwardReply: string) {
  const commands: string[] = [];
  const server = net.createServer((sock) => {
    sock.write('220 pipelining.test\r\n');
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
            sock.write('250 2.0.0 queued\r\n');
          }
          continue;
        }
        commands.push(line);
        const verb = line.split(/[ :]/)[0].toUpperCase();
        if (verb === 'EHLO') sock.write('250-pipelining.test\r\n250-PIPELINING\r\n250 XFORWARD NAME ADDR HELO\r\n');
        else if (verb === 'XFORWARD') heldXforward++;
        else if (verb === 'MAIL') {
          for (; heldXforward > 0; heldXforward--) sock.write(`${xforwardReply}\r\n`);
          sock.write('250 2.1.0 Ok\r\n');
        } else if (verb === 'RCPT') sock.write('250 2.1.5 Ok\r\n');
        else if (verb === 'DATA') {
          inData = true;
          sock.write('354 go\r\n');
        } else if (verb === 'RSET') sock.write('250 2.0.0 Ok\r\n');
        else if (verb === 'QUIT') sock.end('221 bye\r\n');
        else sock.write('502 5.5.2 unknown\r\n');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { port: (server.address() as AddressInfo).port, commands, close: () => new Promise<void>((r) => server.close(() => r())) };
}

async function sendThrough(xforwardReply: string) {
  const down = await pipeliningDownstream(xforwardReply);
  const h = await startHarness({ forwardPort: down.port, banks: { default: { forward: { commandTimeoutMs: 1000 } } } });
  const c = await TestClient.connect(h.app.portOf('default'));
  const r = await c.send({ from: 'a@example.org', to: ['b@example.net'], data: msg, xforward: 'NAME=mx.example.org ADDR=192.0.2.7 HELO=mx.example.org' });
  await c.quit();
  await h.close();
  await down.close();
  return { r, commands: down.commands };
}

describe('XFORWARD to a downstream that offers PIPELINING', () => {
  it('goes in the same write as MAIL, and the message is delivered', async () => {
    const { r, commands } = await sendThrough('250 2.0.0 Ok');
    expect(r.final?.code).toBe(250);
    expect(commands.slice(1, 3)).toEqual(['XFORWARD NAME=mx.example.org ADDR=192.0.2.7 HELO=mx.example.org', 'MAIL FROM:<a@example.org>']);
  });

  it('refused, it only loses the client details: the mail still goes', async () => {
    const { r } = await sendThrough('550 5.7.0 not authorized');
    expect(r.mail.code).toBe(250);
    expect(r.final?.code).toBe(250);
  });
});
