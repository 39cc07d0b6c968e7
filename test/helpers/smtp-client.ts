/**
 * A raw SMTP client for tests: writes exactly the bytes it is given and reads replies, so
 * tests can send bare LF, NUL, pipelined commands or stop in the middle of DATA.
 */
import net from 'node:net';

export interface Reply {
  code: number;
  text: string;
  /** The full reply line(s) as received. */
  raw: string;
}

export class TestClient {
  private buf = '';
  private replies: Reply[] = [];
  private waiters: ((r: Reply) => void)[] = [];
  closed = false;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d) => {
      this.buf += d.toString('latin1');
      let m: RegExpExecArray | null;
      while ((m = /^((?:\d{3}-[^\n]*\n)*)(\d{3})(?: ([^\n]*))?\n/.exec(this.buf))) {
        const raw = m[0];
        this.buf = this.buf.slice(raw.length);
        const r = { code: Number(m[2]), text: (m[3] ?? '').replace(/\r$/, ''), raw: raw.replace(/\r/g, '') };
        const w = this.waiters.shift();
        if (w) w(r);
        else this.replies.push(r);
      }
    });
    socket.on('close', () => (this.closed = true));
    socket.on('error', () => undefined);
  }

  static async connect(port: number): Promise<TestClient> {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const c = new TestClient(socket);
    await c.read();
    return c;
  }

  read(timeoutMs = 20000): Promise<Reply> {
    const r = this.replies.shift();
    if (r) return Promise.resolve(r);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no reply')), timeoutMs);
      this.waiters.push((x) => {
        clearTimeout(t);
        resolve(x);
      });
    });
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  async cmd(line: string): Promise<Reply> {
    this.write(`${line}\r\n`);
    return this.read();
  }

  /** EHLO, MAIL, RCPTs, DATA with the given raw message (dot-stuffed by the caller if needed), final dot. */
  async send(opts: {
    from: string;
    to: string[];
    data: string | Buffer;
    mailParams?: string;
    xforward?: string;
  }): Promise<{ mail: Reply; rcpts: Reply[]; data?: Reply; final?: Reply }> {
    await this.cmd('EHLO test.example');
    if (opts.xforward) await this.cmd(`XFORWARD ${opts.xforward}`);
    const mail = await this.cmd(`MAIL FROM:<${opts.from}>${opts.mailParams ? ` ${opts.mailParams}` : ''}`);
    const rcpts: Reply[] = [];
    for (const to of opts.to) rcpts.push(await this.cmd(`RCPT TO:<${to}>`));
    if (mail.code !== 250 || !rcpts.some((r) => r.code === 250)) return { mail, rcpts };
    const data = await this.cmd('DATA');
    if (data.code !== 354) return { mail, rcpts, data };
    this.write(opts.data);
    const text = opts.data.toString('latin1');
    this.write(text.endsWith('\r\n') ? '.\r\n' : '\r\n.\r\n');
    return { mail, rcpts, data, final: await this.read() };
  }

  async quit(): Promise<void> {
    if (!this.closed) {
      this.write('QUIT\r\n');
      await new Promise((r) => this.socket.once('close', r).setTimeout(2000, () => this.socket.destroy()));
    }
  }
}
