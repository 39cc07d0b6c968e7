/**
 * The MTA side of the milter protocol, for tests: packets are written byte by byte from the
 * protocol description (Sendmail's mfdef.h numbers), not with src/lib/milter's encoders, so a
 * mistake there cannot cancel itself out. Replies are read with a plain length-prefix parser.
 */
import net from 'node:net';

export const SMFIC = {
  ABORT: 'A',
  BODY: 'B',
  CONNECT: 'C',
  MACRO: 'D',
  BODYEOB: 'E',
  HELO: 'H',
  HEADER: 'L',
  MAIL: 'M',
  EOH: 'N',
  OPTNEG: 'O',
  QUIT: 'Q',
  RCPT: 'R',
  DATA: 'T',
} as const;
/** Postfix 3.7's offer: every action, every protocol step flag it knows. */
export const POSTFIX_ACTIONS = 0x1ff;
export const POSTFIX_PROTOCOL = 0x1fffff;

export interface MilterReply {
  code: string;
  data: Buffer;
}

export function pkt(code: string, ...parts: (Buffer | string)[]): Buffer {
  const data = Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p)));
  const head = Buffer.alloc(5);
  head.writeUInt32BE(data.length + 1, 0);
  head.write(code, 4, 'latin1');
  return Buffer.concat([head, data]);
}

export const z = (s: string) => `${s}\0`;
export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
}

export class MilterClient {
  private buf = Buffer.alloc(0);
  private replies: MilterReply[] = [];
  private waiters: (() => void)[] = [];
  closed = false;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      while (this.buf.length >= 4 && this.buf.length >= 4 + this.buf.readUInt32BE(0)) {
        const len = this.buf.readUInt32BE(0);
        this.replies.push({ code: String.fromCharCode(this.buf[4]), data: this.buf.subarray(5, 4 + len) });
        this.buf = this.buf.subarray(4 + len);
      }
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  static connect(port: number): Promise<MilterClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(new MilterClient(s)));
      s.once('error', reject);
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  send(...packets: Buffer[]): void {
    this.socket.write(Buffer.concat(packets));
  }

  /** The next reply; rejects when the connection closes first or after `ms`. */
  async next(ms = 5000): Promise<MilterReply> {
    const deadline = Date.now() + ms;
    while (this.replies.length === 0) {
      if (this.closed) throw new Error('milter connection closed');
      if (Date.now() > deadline) throw new Error('no milter reply in time');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.replies.shift()!;
  }

  /** Replies up to and including the first final one (anything but a modification). */
  async untilFinal(ms = 10000): Promise<MilterReply[]> {
    const out: MilterReply[] = [];
    for (;;) {
      const r = await this.next(ms);
      out.push(r);
      if (!'+-bhimpe2'.includes(r.code)) return out;
    }
  }

  /** Resolves when the server has closed the connection. */
  async closedByServer(ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('connection still open');
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** OPTNEG with Postfix's offer (or `protocol`), returns version, actions, protocol and the macro lists. */
  async negotiate(protocol = POSTFIX_PROTOCOL, actions = POSTFIX_ACTIONS): Promise<{ version: number; actions: number; protocol: number; macros: Map<number, string> }> {
    this.send(pkt(SMFIC.OPTNEG, u32(6), u32(actions), u32(protocol)));
    const r = await this.next();
    if (r.code !== 'O') throw new Error(`expected an OPTNEG reply, got ${r.code}`);
    const macros = new Map<number, string>();
    let pos = 12;
    while (pos < r.data.length) {
      const stage = r.data.readUInt32BE(pos);
      const end = r.data.indexOf(0, pos + 4);
      macros.set(stage, r.data.subarray(pos + 4, end).toString());
      pos = end + 1;
    }
    return { version: r.data.readUInt32BE(0), actions: r.data.readUInt32BE(4), protocol: r.data.readUInt32BE(8), macros };
  }

  close(): void {
    this.socket.destroy();
  }
}

/** A whole message as Postfix sends it after negotiation: connect, helo, mail, rcpt, header fields, body, end. */
export function messagePackets(opts: {
  /** `port` 0 is how Postfix's cleanup presents a local submission (sendmail, pickup). */
  client?: { name: string; addr: string; port?: number };
  helo?: string;
  from: string;
  fromArgs?: string[];
  to: string[];
  macros?: Record<string, Record<string, string>>;
  header: [string, string][];
  body: string | Buffer;
  withConnect?: boolean;
  /** SMFIC_DATA (with its macros) after the recipients, as Postfix sends it; the reply is the caller's to read. */
  data?: boolean;
}): { envelope: Buffer[]; content: Buffer[]; eom: Buffer } {
  const macro = (cmd: string) => {
    const m = opts.macros?.[cmd];
    return m ? [pkt(SMFIC.MACRO, cmd, ...Object.entries(m).flatMap(([k, v]) => [z(k), z(v)]))] : [];
  };
  const c = opts.client ?? { name: 'mx.remote.test', addr: '198.51.100.7' };
  const envelope = [
    ...(opts.withConnect === false
      ? []
      : [
          ...macro('C'),
          pkt(SMFIC.CONNECT, z(c.name), '4', Buffer.from([((c.port ?? 40000) >> 8) & 0xff, (c.port ?? 40000) & 0xff]), z(c.addr)),
          pkt(SMFIC.HELO, z(opts.helo ?? c.name)),
        ]),
    ...macro('M'),
    pkt(SMFIC.MAIL, z(`<${opts.from}>`), ...(opts.fromArgs ?? []).map(z)),
    ...opts.to.flatMap((t) => [...macro('R'), pkt(SMFIC.RCPT, z(`<${t}>`))]),
    ...(opts.data ? [...macro('T'), pkt(SMFIC.DATA)] : []),
  ];
  const body = typeof opts.body === 'string' ? Buffer.from(opts.body, 'utf8') : opts.body;
  const chunks: Buffer[] = [];
  for (let i = 0; i < body.length; i += 65535) chunks.push(pkt(SMFIC.BODY, body.subarray(i, i + 65535)));
  const content = [...opts.header.map(([n, v]) => pkt(SMFIC.HEADER, z(n), Buffer.from(v, 'utf8'), '\0')), pkt(SMFIC.EOH), ...chunks];
  return { envelope, content, eom: Buffer.concat([...macro('E'), pkt(SMFIC.BODYEOB)]) };
}
