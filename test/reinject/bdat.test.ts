import { startHarness } from '../helpers/postseal';
import { startScriptedServer, type Script } from '../helpers/scripted-server';
import { TestClient } from '../helpers/smtp-client';
import net, { type AddressInfo } from 'node:net';

const CHUNKING = '250-chunking.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 CHUNKING';

async function through(script: Script, messages: (string | Buffer)[], opts: Parameters<typeof startScriptedServer>[1] = {}) {
  const down = await startScriptedServer({ EHLO: CHUNKING, ...script }, opts);
  const h = await startHarness({ forwardPort: down.port, banks: { default: { forward: { commandTimeoutMs: 1000, dataDoneTimeoutMs: 1000 } } } });
  const c = await TestClient.connect(h.app.portOf('default'));
  const results = [];
  for (const data of messages) results.push(await c.send({ from: 'a@example.org', to: ['b@example.net'], data }));
  await c.quit();
  await h.close();
  await down.close();
  return { results, down };
}

/** What the downstream stored: every line ending CRLF. */
const bareLf = (b: Buffer) => /(^|[^\r])\n/.test(b.toString('latin1'));

describe('BDAT to a downstream that offers CHUNKING and PIPELINING', () => {
  it('sends a message as one BDAT LAST chunk, not dot-stuffed, with its line endings made CRLF', async () => {
    // The upstream's dot-stuffing ("..") is undone by the listener; BDAT needs none.
    const msg = 'From: a@example.org\r\nSubject: dots\r\n\r\nfirst\r\n..a line that starts with a dot\nbare LF before\r\nlast';
    const { results, down } = await through({}, [msg]);
    expect(results[0].final?.code).toBe(250);
    expect(results[0].final?.text).toBe('2.0.0 Ok: queued as SCRIPTED');
    const stored = down.messages[0];
    expect(down.commands).not.toContain('DATA');
    expect(down.commands.filter((l) => l.startsWith('BDAT'))).toEqual([`BDAT ${stored.length} LAST`]);
    expect(stored.toString('latin1').endsWith('\r\n\r\nfirst\r\n.a line that starts with a dot\r\nbare LF before\r\nlast\r\n')).toBe(true);
    expect(bareLf(stored)).toBe(false);
  });

  it('passes bare CR and 8-bit bytes on as they came, in a message of several chunks', async () => {
    // Line ending made CRLF across chunk boundaries: test/reinject/dot-stuffer.test.ts.
    const pad = `${'p'.repeat(1022)}\r\n`.repeat(255);
    const msg = Buffer.from(`Subject: bytes\r\n\r\n${pad}${'q'.repeat(1000)}\r\nbare\rCR and J\xc3\xb6rg \xff\r\n`, 'latin1');
    const { results, down } = await through({}, [msg]);
    expect(results[0].final?.code).toBe(250);
    const stored = down.messages[0].toString('latin1');
    expect(stored.endsWith(`${pad}${'q'.repeat(1000)}\r\nbare\rCR and J\xc3\xb6rg \xff\r\n`)).toBe(true);
    expect(bareLf(down.messages[0])).toBe(false);
    expect(down.commands.filter((l) => l.startsWith('BDAT')).length).toBeGreaterThan(1);
  });

  it('sends a message over 256 KB in several chunks, pipelined, and it arrives whole', async () => {
    const line = `${'x'.repeat(998)}\r\n`;
    const body = line.repeat(700);
    const msg = `From: a@example.org\r\nSubject: big\r\n\r\n${body}`;
    const { results, down } = await through({}, [msg]);
    expect(results[0].final?.code).toBe(250);
    const bdat = down.commands.filter((l) => l.startsWith('BDAT'));
    expect(bdat.length).toBeGreaterThan(1);
    expect(bdat.at(-1)).toMatch(/^BDAT \d+ LAST$/);
    const sizes = bdat.map((l) => Number(l.split(' ')[1]));
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(down.messages[0].length);
    expect(down.messages[0].toString('latin1').endsWith(`\r\n\r\n${body}`)).toBe(true);
  });

  it('passes a refused LAST chunk up with its code and text, and resets the connection before the next message', async () => {
    const { results, down } = await through({ BDAT_LAST: '552 5.3.4 Message size exceeds fixed limit' }, ['Subject: one\r\n\r\nx\r\n', 'Subject: two\r\n\r\ny\r\n']);
    expect([results[0].final?.code, results[0].final?.text]).toEqual([552, '5.3.4 Message size exceeds fixed limit']);
    const second = down.commands.lastIndexOf('MAIL FROM:<a@example.org>');
    expect(down.commands[second - 1]).toBe('RSET');
    expect(down.commands.filter((l) => l.startsWith('EHLO'))).toHaveLength(1);
  });

  it('passes up the first refused chunk of a large message, not the reply to LAST', async () => {
    const msg = `Subject: big\r\n\r\n${`${'y'.repeat(998)}\r\n`.repeat(700)}`;
    const { results } = await through({ BDAT: '452 4.3.1 Insufficient system storage', BDAT_LAST: '503 5.5.1 Error: BDAT after error' }, [msg]);
    expect([results[0].final?.code, results[0].final?.text]).toEqual([452, '4.3.1 Insufficient system storage']);
  });

  it('passes up a refused chunk when the downstream hangs up right after it, as Postfix does at smtpd_hard_error_limit', async () => {
    // Postfix's smtpd counts each chunk it skips after a refusal as an error and at
    // smtpd_hard_error_limit answers 421 and hangs up (and it stops reading beyond 1.5 times
    // message_size_limit): the message was refused (554), not lost in transit (451). A limit
    // of 1 makes the hang-up come with the refusal, whatever was sent by then.
    const msg = `Subject: big\r\n\r\n${`${'w'.repeat(998)}\r\n`.repeat(6500)}`;
    const { results, down } = await through({ BDAT: '554 5.7.1 <DATA>: Data command rejected' }, [msg], { bdatErrorLimit: 1 });
    expect(down.messages).toHaveLength(0);
    expect([results[0].final?.code, results[0].final?.text]).toEqual([554, '5.7.1 <DATA>: Data command rejected']);
  });

  it('does not reuse a connection after a refused chunk that was not the last, as Postfix slows such a session down', async () => {
    const msg = `Subject: big\r\n\r\n${`${'v'.repeat(998)}\r\n`.repeat(700)}`;
    const { results, down } = await through({ BDAT: '452 4.3.1 Insufficient system storage', BDAT_LAST: '551 5.0.0 Discarded after earlier error' }, [
      msg,
      'Subject: two\r\n\r\ny\r\n',
    ]);
    expect(results[0].final?.code).toBe(452);
    expect(down.commands.filter((l) => l.startsWith('EHLO'))).toHaveLength(2);
    const first = down.commands.slice(0, down.commands.lastIndexOf('EHLO filter.test'));
    expect(first.at(-1)).toBe('QUIT');
    expect(first).not.toContain('RSET');
  });

  it('stops sending a large message once the downstream has refused one of its chunks, and sends no LAST', async () => {
    const msg = `Subject: huge\r\n\r\n${`${'t'.repeat(998)}\r\n`.repeat(20_000)}`;
    const { results, down } = await through({ BDAT: '554 5.7.1 <DATA>: Data command rejected' }, [msg]);
    expect([results[0].final?.code, results[0].final?.text]).toEqual([554, '5.7.1 <DATA>: Data command rejected']);
    const bdat = down.commands.filter((l) => l.startsWith('BDAT'));
    // 20 MB is 77 chunks of 256 KB.
    expect(bdat.length).toBeLessThan(70);
    expect(bdat.some((l) => l.endsWith('LAST'))).toBe(false);
  });

  it('answers 451 4.4.0 (downstream failed), not 451 4.3.0 (a postseal bug), when the downstream resets the connection mid-message', async () => {
    // Drops the connection, unread octets and all (a reset), as soon as BDAT begins.
    const server = net.createServer((sock) => {
      sock.on('error', () => undefined);
      sock.write('220 reset.test ESMTP\r\n');
      let buf = '';
      sock.on('data', (d) => {
        buf += d.toString('latin1');
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line.startsWith('BDAT')) return void sock.resetAndDestroy();
          sock.write(line.startsWith('EHLO') ? `${CHUNKING}\r\n` : '250 2.0.0 Ok\r\n');
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const h = await startHarness({ forwardPort: (server.address() as AddressInfo).port, banks: { default: { forward: { commandTimeoutMs: 1000, dataDoneTimeoutMs: 1000 } } } });
    const c = await TestClient.connect(h.app.portOf('default'));
    const r = await c.send({ from: 'a@example.org', to: ['b@example.net'], data: `Subject: big\r\n\r\n${`${'u'.repeat(998)}\r\n`.repeat(6500)}` });
    await c.quit();
    await h.close();
    await new Promise<void>((done) => server.close(() => done()));
    expect(r.final?.code).toBe(451);
    expect(r.final?.text).toMatch(/^4\.4\.0 /);
  });

  it('answers 451, never 250, when the downstream refuses a chunk and then accepts LAST', async () => {
    const msg = `Subject: big\r\n\r\n${`${'z'.repeat(998)}\r\n`.repeat(700)}`;
    // The refusals come with LAST's reply, when the whole message has been sent.
    const { results } = await through({ BDAT: '554 5.0.0 no' }, [msg], { holdChunkRepliesUntilLast: true });
    expect(results[0].final?.code).toBe(451);
    expect(results[0].final?.text).toMatch(/^4\.4\.0 .*refused a BDAT chunk/);
  });

  it('keeps DATA for LMTP', async () => {
    const down = await startScriptedServer({ EHLO: CHUNKING });
    const h = await startHarness({ forwardPort: down.port, banks: { default: { forward: { protocol: 'lmtp' } } }, listeners: [{ bank: 'default', protocol: 'lmtp' }] });
    const c = await TestClient.connect(h.app.portOf('default'));
    await c.cmd('LHLO x');
    await c.cmd('MAIL FROM:<a@example.org>');
    await c.cmd('RCPT TO:<b@example.net>');
    await c.cmd('DATA');
    c.write('Subject: lmtp\r\n\r\nz\r\n.\r\n');
    const final = await c.read();
    await c.quit();
    await h.close();
    await down.close();
    expect(final.code).toBe(250);
    expect(down.commands).toContain('DATA');
    expect(down.commands.some((l) => l.startsWith('BDAT'))).toBe(false);
  });

  it('keeps DATA for a server that offers CHUNKING without PIPELINING', async () => {
    const { results, down } = await through({ EHLO: '250-plain.test\r\n250 CHUNKING' }, ['Subject: plain\r\n\r\nz\r\n']);
    expect(results[0].final?.code).toBe(250);
    expect(down.commands).toContain('DATA');
  });
});

describe('a downstream that stops reading the message', () => {
  const big = `Subject: big\r\n\r\n${`${'w'.repeat(998)}\r\n`.repeat(30_000)}`;

  /** `big` (more than the loopback socket buffers hold) through postseal to a downstream that stalls. */
  async function stalled(script: Script, opts: Parameters<typeof startScriptedServer>[1]) {
    const down = await startScriptedServer(script, opts);
    const h = await startHarness({ forwardPort: down.port, banks: { default: { forward: { dataDoneTimeoutMs: 1000 } } } });
    const c = await TestClient.connect(h.app.portOf('default'));
    const r = await c.send({ from: 'a@example.org', to: ['b@example.net'], data: big });
    await c.quit();
    await h.close();
    await down.close();
    return { r, down };
  }

  it('gives up with 451 4.4.2 after dataDoneTimeoutMs when it stops reading BDAT chunks', async () => {
    const { r, down } = await stalled({ EHLO: CHUNKING }, { stopReadingAtData: true });
    expect(down.commands.some((l) => l.startsWith('BDAT'))).toBe(true);
    expect(r.final?.code).toBe(451);
    expect(r.final?.text).toMatch(/^4\.4\.2 .*stopped reading the message for 1000 ms/);
  });

  it('gives up with 451 4.4.2 after dataDoneTimeoutMs when it answered DATA with 354 and then stopped reading', async () => {
    const { r, down } = await stalled({}, { stopReadingAtData: true });
    expect(down.commands).toContain('DATA');
    expect(r.final?.code).toBe(451);
    expect(r.final?.text).toMatch(/^4\.4\.2 .*stopped reading the message for 1000 ms/);
  });

  it('passes up the refusal of a chunk that came while postseal waited to write, not 451 4.4.2', async () => {
    const { r, down } = await stalled({ EHLO: CHUNKING, BDAT: '552 5.3.4 message too big for me' }, { stopReadingAfterChunks: 1 });
    expect(r.final?.code).toBe(552);
    expect(r.final?.text).toBe('5.3.4 message too big for me');
    expect(down.commands.filter((l) => l.endsWith('LAST'))).toEqual([]);
  });
});
