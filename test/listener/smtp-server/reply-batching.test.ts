import net from 'node:net';
import { pipelinedLines } from '../../../src/listener/smtp-server/reply-batching';
import { startHarness } from '../../helpers/postseal';
import { startSink } from '../../helpers/sink';

/** A raw client that keeps each chunk the server sent apart. */
class RawClient {
  readonly chunks: string[] = [];
  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (d) => this.chunks.push(d.toString('latin1')));
  }

  static async open(port: number): Promise<RawClient> {
    const c = new RawClient(net.connect(port, '127.0.0.1'));
    await c.until(/^220 /m);
    c.send('EHLO client.example\r\n');
    await c.until(/^250 /m);
    c.chunks.length = 0;
    return c;
  }

  send(text: string): void {
    this.socket.write(text);
  }

  /** Waits until everything received matches `re`. */
  async until(re: RegExp, timeoutMs = 5000): Promise<void> {
    for (const end = Date.now() + timeoutMs; !re.test(this.chunks.join('')); ) {
      if (Date.now() > end) throw new Error(`no ${re} in ${JSON.stringify(this.chunks)}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  close(): void {
    this.socket.end('QUIT\r\n');
  }
}

async function listener() {
  const sink = await startSink();
  const h = await startHarness({ forwardPort: sink.port });
  const close = async () => {
    await h.close();
    await sink.close();
  };
  return { port: h.app.portOf('default'), sink, close };
}

describe('replies to pipelined commands', () => {
  it('go in one write when MAIL, RCPT and DATA come in one packet, and the message is delivered', async () => {
    const l = await listener();
    const c = await RawClient.open(l.port);
    c.send('MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n');
    await c.until(/^354 /m);
    // Each reply waits for the downstream's: unbatched, they would arrive one by one.
    expect(c.chunks).toHaveLength(1);
    expect(c.chunks[0]).toMatch(/^250 [^\n]*\r\n250 [^\n]*\r\n354 [^\n]*\r\n$/);
    c.send('Subject: x\r\n\r\nbody\r\n.\r\n');
    await c.until(/\r\n250 [^\n]*\r\n$/);
    c.close();
    await l.close();
    expect(l.sink.received).toHaveLength(1);
  });

  it('wait only for commands the client already sent: MAIL alone is answered at once, two pipelined RCPTs together', async () => {
    const l = await listener();
    const c = await RawClient.open(l.port);
    c.send('MAIL FROM:<a@example.org>\r\n');
    await c.until(/^250 /m);
    c.send('RCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\n');
    await c.until(/^250 [^\n]*\r\n[\s\S]*^250 /m);
    expect(c.chunks).toHaveLength(2);
    c.send('RSET\r\n');
    await c.until(/^250 [^\n]*\r\n$/m);
    c.close();
    await l.close();
  });
});

describe('a long pipelined group', () => {
  it('is answered in full: 10,000 NOOPs in one write get their 10,000 replies at once, not at the idle timeout', async () => {
    const l = await listener();
    const c = await RawClient.open(l.port);
    c.send('NOOP\r\n'.repeat(10_000));
    await c.until(/^(?:250 [^\n]*\r\n){10000}$/, 10_000);
    c.close();
    await l.close();
  }, 20_000);

  it('is answered in full when the downstream refuses 1,500 pipelined recipients', async () => {
    const sink = await startSink();
    sink.behaviour.fail = { rcpt: [550, '5.1.1 This recipient does not exist here, and the text of the refusal is long'] };
    const h = await startHarness({ forwardPort: sink.port });
    const c = await RawClient.open(h.app.portOf('default'));
    const rcpts = Array.from({ length: 1500 }, (_, i) => `RCPT TO:<nobody${i}@example.net>\r\n`).join('');
    c.send(`MAIL FROM:<a@example.org>\r\n${rcpts}`);
    await c.until(/^250 [^\n]*\r\n(?:[45]\d\d [^\n]*\r\n){1500}$/, 10_000);
    c.close();
    await h.close();
    await sink.close();
  }, 20_000);
});

describe('pipelinedLines', () => {
  it('counts the complete command lines up to the first that ends a group', () => {
    const count = (remainder: string, text: string) => pipelinedLines(remainder, Buffer.from(text, 'latin1'));
    expect(count('', 'MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSubject: x\r\n')).toBe(3);
    expect(count('', 'MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCP')).toBe(2);
    expect(count('', 'quit\r\nNOOP\r\n')).toBe(1);
    expect(count('', 'RCPT TO:<data@d>\r\nSTARTTLS\r\nMAIL FROM:<x@y>\r\n')).toBe(2);
    // The parser's partial line and the chunk's first bytes make one line.
    expect(count('DA', 'TA\r\nSubject: x\r\n')).toBe(1);
    expect(count('', '')).toBe(0);
    // smtp-server upper-cases command names as UTF-8: "ſtarttls" is STARTTLS to it, so it ends a group here too.
    expect(pipelinedLines('', Buffer.from('NOOP\r\nſtarttls\r\nNOOP\r\n', 'utf8'))).toBe(2);
  });
});
