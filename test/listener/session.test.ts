import { execFileSync, spawn } from 'node:child_process';
import net, { type AddressInfo } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startScriptedServer } from '../helpers/scripted-server';
import { startSink } from '../helpers/sink';
import { startHarness } from '../helpers/postseal';
import { TestClient } from '../helpers/smtp-client';

const msg = 'From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n';

describe('SMTP session behaviour', () => {
  it('an RSET after RCPT abandons that transaction; the next one is delivered alone', async () => {
    const sink = await startSink();
    const h = await startHarness({ forwardPort: sink.port });
    const c = await TestClient.connect(h.app.portOf('default'));
    await c.cmd('EHLO x');
    await c.cmd('MAIL FROM:<first@example.org>');
    await c.cmd('RCPT TO:<dropped@example.net>');
    expect((await c.cmd('RSET')).code).toBe(250);
    const r = await c.send({ from: 'second@example.org', to: ['kept@example.net'], data: msg });
    await c.quit();
    await h.close();
    await sink.close();
    expect(r.final?.code).toBe(250);
    expect(sink.received).toHaveLength(1);
    expect(sink.received[0].mailFrom).toBe('second@example.org');
    expect(sink.received[0].recipients.map((x) => x.address)).toEqual(['kept@example.net']);
  });

  it('several messages on one connection each reach the downstream once, with DSN parameters intact', async () => {
    const sink = await startSink();
    const h = await startHarness({ forwardPort: sink.port });
    const c = await TestClient.connect(h.app.portOf('default'));
    await c.cmd('EHLO x');
    for (let i = 0; i < 3; i++) {
      await c.cmd(`MAIL FROM:<s${i}@example.org> RET=HDRS ENVID=env${i}`);
      await c.cmd(`RCPT TO:<r${i}@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;r${i}@example.net`);
      await c.cmd('DATA');
      c.write(`${msg}.\r\n`);
      expect((await c.read()).code).toBe(250);
    }
    await c.quit();
    await h.close();
    await sink.close();
    expect(sink.received.map((m) => m.mailFrom)).toEqual(['s0@example.org', 's1@example.org', 's2@example.org']);
    expect(sink.received[2].mailArgs).toMatchObject({ RET: 'HDRS', ENVID: 'env2' });
    expect(sink.received[2].recipients[0].args).toMatchObject({ NOTIFY: 'SUCCESS,FAILURE', ORCPT: 'rfc822;r2@example.net' });
    expect(sink.connections).toBe(1);
  });

  it('XFORWARD HELO=[UNAVAILABLE] (locally submitted mail) keeps the session usable and is passed on as such', async () => {
    const down = await startScriptedServer({ EHLO: '250-scripted\r\n250 XFORWARD NAME ADDR HELO SOURCE' });
    const h = await startHarness({ forwardPort: down.port });
    const c = await TestClient.connect(h.app.portOf('default'));
    const r = await c.send({ from: 'a@example.org', to: ['b@example.net'], data: msg, xforward: 'NAME=[UNAVAILABLE] ADDR=[UNAVAILABLE] HELO=[UNAVAILABLE] SOURCE=LOCAL' });
    await c.quit();
    await h.close();
    await down.close();
    expect(r.mail.code).toBe(250);
    expect(r.final?.code).toBe(250);
    expect(down.commands).toContain('XFORWARD NAME=[UNAVAILABLE] ADDR=[UNAVAILABLE] HELO=[UNAVAILABLE] SOURCE=LOCAL');
  });

  it('on a bank that signs, tells the downstream SOURCE=REMOTE, so its cleanup rewrites no header address after signing', async () => {
    const down = await startScriptedServer({ EHLO: '250-scripted\r\n250 XFORWARD NAME ADDR HELO SOURCE' });
    const h = await startHarness({ forwardPort: down.port, banks: { default: { originating: true } } });
    const send = async (xforward?: string) => {
      const c = await TestClient.connect(h.app.portOf('default'));
      const r = await c.send({ from: 'a@example.org', to: ['b@example.net'], data: msg, xforward });
      await c.quit();
      return r;
    };
    const local = await send('NAME=localhost ADDR=127.0.0.1 HELO=client SOURCE=LOCAL');
    const none = await send();
    await h.close();
    await down.close();
    expect([local.final?.code, none.final?.code]).toEqual([250, 250]);
    expect(down.commands.filter((l) => l.startsWith('XFORWARD'))).toEqual(['XFORWARD NAME=localhost ADDR=127.0.0.1 HELO=client SOURCE=REMOTE', 'XFORWARD SOURCE=REMOTE']);
  });

  it('writes one log line per message with session, bank, timings, findings and reply', async () => {
    const sink = await startSink();
    const h = await startHarness({ forwardPort: sink.port });
    const c = await TestClient.connect(h.app.portOf('default'));
    await c.send({ from: 'a@example.org', to: ['b@example.net'], data: msg, xforward: 'ADDR=192.0.2.1 IDENT=ABC123' });
    await c.quit();
    await h.close();
    await sink.close();
    const lines = h.logs.filter((l) => l.msg === 'message');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ bank: 'default', queueId: 'ABC123', client: '192.0.2.1', verdict: 'pass', reply: expect.stringMatching(/^2\.0\.0 Ok: queued as SINK1/) });
    expect(Object.keys(lines[0].timings as object)).toEqual(['loop-guard', 'header-sanity']);
    expect(typeof lines[0].durationMs).toBe('number');
  });

  it('offers STARTTLS when the listener has a certificate, and delivers over TLS', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'postseal-tls-'));
    const [key, cert] = [path.join(dir, 'key.pem'), path.join(dir, 'cert.pem')];
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=filter.test', '-days', '1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
    const sink = await startSink();
    const h = await startHarness({ forwardPort: sink.port, main: { listeners: [{ port: 0, bank: 'default', tls: { certFile: cert, keyFile: key } }] } });
    const port = String(h.app.portOf('default'));
    const r = await new Promise<{ status: number | null; out: string }>((resolve) => {
      const p = spawn('swaks', ['--server', '127.0.0.1', '--port', port, '--tls', '--from', 'a@example.org', '--to', 'b@example.net', '--helo', 'client.test', '--timeout', '10']);
      let out = '';
      p.stdout.on('data', (d) => (out += d));
      p.on('exit', (status) => resolve({ status, out }));
    });
    await h.close();
    await sink.close();
    expect(r.out).toMatch(/STARTTLS/);
    expect(r.out).toMatch(/TLS started/);
    expect(r.status).toBe(0);
    expect(sink.received).toHaveLength(1);
  });

  it('a client that goes away while its first RCPT is with the downstream leaves that transaction reset, and the connection serves the next', async () => {
    // Answers MAIL and the first RCPT only when told to: the upstream is gone by then.
    const commands: string[] = [];
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => (release = r));
    const server = net.createServer((sock) => {
      sock.on('error', () => undefined);
      sock.write('220 held.test ESMTP\r\n');
      let buf = '';
      let first = true;
      sock.on('data', async (d) => {
        buf += d.toString('latin1');
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          commands.push(line);
          if (line.startsWith('EHLO')) sock.write('250-held.test\r\n250 PIPELINING\r\n');
          else if (line.startsWith('RCPT') && first) {
            first = false;
            await held;
            sock.write('250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n');
          } else if (line.startsWith('MAIL') && first) continue;
          else if (line === 'DATA') sock.write('354 go\r\n');
          else if (line === '.') sock.write('250 2.0.0 Ok: queued\r\n');
          else if (/^(MAIL|RCPT|RSET)/.test(line)) sock.write('250 2.0.0 Ok\r\n');
          else if (line === 'QUIT') sock.end('221 bye\r\n');
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const h = await startHarness({ forwardPort: (server.address() as AddressInfo).port });
    const gone = await TestClient.connect(h.app.portOf('default'));
    await gone.cmd('EHLO x');
    await gone.cmd('MAIL FROM:<gone@example.org>');
    gone.write('RCPT TO:<never@example.net>\r\n');
    while (!commands.some((l) => l.startsWith('RCPT'))) await new Promise((r) => setTimeout(r, 10));
    gone.socket.destroy();
    await new Promise((r) => setTimeout(r, 50));
    release();
    while (!commands.includes('RSET')) await new Promise((r) => setTimeout(r, 10));
    const c = await TestClient.connect(h.app.portOf('default'));
    const r = await c.send({ from: 'next@example.org', to: ['kept@example.net'], data: msg });
    await c.quit();
    await h.close();
    await new Promise<void>((done) => server.close(() => done()));
    expect(r.final?.code).toBe(250);
    expect(commands.filter((l) => /^(EHLO|MAIL|RCPT|RSET|DATA)/.test(l))).toEqual([
      expect.stringMatching(/^EHLO /),
      'MAIL FROM:<gone@example.org>',
      'RCPT TO:<never@example.net>',
      'RSET',
      'MAIL FROM:<next@example.org>',
      'RCPT TO:<kept@example.net>',
      'DATA',
    ]);
  });
});
