/**
 * The milter framing and codec (src/lib/milter/) over a real socket: packets written by the
 * test's own MTA-side encoder (test/helpers/milter-client.ts, bytes as mfdef.h describes
 * them) arrive as typed commands however the stream is cut, and the reply encoders produce
 * the bytes an MTA expects.
 */
import net from 'node:net';
import { FrameReader } from '../../../src/lib/milter/frames';
import { changeHeader, decodeCommand, insertHeader, MilterProtocolError, optnegReply, replaceBody, replyCode, type MilterCommand } from '../../../src/lib/milter/protocol';
import { pkt, u32, z } from '../../helpers/milter-client';

/** A server that decodes what it receives; resolves with the commands once `count` arrived. */
async function roundTrip(bytes: Buffer, cut: number, count: number): Promise<MilterCommand[]> {
  const got: MilterCommand[] = [];
  let done: (v: MilterCommand[]) => void = () => undefined;
  const result = new Promise<MilterCommand[]>((r) => (done = r));
  const server = net.createServer((s) => {
    const reader = new FrameReader(1 << 20);
    s.on('data', (d: Buffer) => {
      for (const f of reader.push(d)) got.push(decodeCommand(f.code, f.data));
      if (got.length >= count) done(got);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  client.setNoDelay(true);
  for (let i = 0; i < bytes.length; i += cut) {
    client.write(bytes.subarray(i, i + cut));
    await new Promise((r) => setImmediate(r));
  }
  const out = await result;
  client.destroy();
  server.close();
  return out;
}

const conversation = Buffer.concat([
  pkt('O', u32(6), u32(0x1ff), u32(0x1fffff)),
  pkt('D', 'C', z('{daemon_name}'), z('ORIGINATING'), z('j'), z('mail.example.org')),
  pkt('C', z('mx.remote.test'), '4', Buffer.from([0x30, 0x39]), z('198.51.100.7')),
  pkt('H', z('mx.remote.test')),
  pkt('M', z('<alice@example.org>'), z('BODY=8BITMIME'), z('SIZE=100')),
  pkt('R', z('<bob@example.test>')),
  pkt('L', z('Subject'), z(' folded\n\tvalue')),
  pkt('N'),
  pkt('B', 'body\r\n'),
  pkt('E'),
]);

describe('milter protocol', () => {
  it.each([1, 3, 7, conversation.length])('decodes a whole conversation cut into pieces of %i bytes', async (cut) => {
    const cmds = await roundTrip(conversation, cut, 10);
    expect(cmds).toEqual([
      { kind: 'optneg', version: 6, actions: 0x1ff, protocol: 0x1fffff },
      {
        kind: 'macro',
        for: 0x43,
        macros: [
          ['{daemon_name}', 'ORIGINATING'],
          ['j', 'mail.example.org'],
        ],
      },
      { kind: 'connect', hostname: 'mx.remote.test', family: 'inet', port: 12345, address: '198.51.100.7' },
      { kind: 'helo', name: 'mx.remote.test' },
      { kind: 'mail', args: ['<alice@example.org>', 'BODY=8BITMIME', 'SIZE=100'] },
      { kind: 'rcpt', args: ['<bob@example.test>'] },
      { kind: 'header', name: 'Subject', value: Buffer.from(' folded\n\tvalue') },
      { kind: 'eoh' },
      { kind: 'body', chunk: Buffer.from('body\r\n') },
      { kind: 'eom', chunk: Buffer.alloc(0) },
    ]);
  });

  it('refuses a packet longer than the limit before buffering it', () => {
    const reader = new FrameReader(1000);
    expect(() => reader.push(Buffer.from([0, 0, 0x10, 0, 0x42]))).toThrow(MilterProtocolError);
  });

  it('refuses a packet of length 0', () => {
    expect(() => new FrameReader(1000).push(Buffer.alloc(4))).toThrow(MilterProtocolError);
  });

  it('refuses a header without its NUL terminators and an unknown command', () => {
    expect(() => decodeCommand(0x4c, Buffer.from('Subject\0no end'))).toThrow(MilterProtocolError);
    expect(() => decodeCommand(0x7a, Buffer.alloc(0))).toThrow(MilterProtocolError);
  });

  it('reads a unix-socket connect (port 0 and a path) and one of unknown family (nothing after it)', () => {
    expect(decodeCommand(0x43, Buffer.concat([Buffer.from('localhost\0L\0\0'), Buffer.from('/var/run/x\0')]))).toEqual({
      kind: 'connect',
      hostname: 'localhost',
      family: 'unix',
      port: 0,
      address: '/var/run/x',
    });
    expect(decodeCommand(0x43, Buffer.from('localhost\0U'))).toEqual({ kind: 'connect', hostname: 'localhost', family: 'unknown', port: 0, address: '' });
  });

  it('writes the option negotiation reply with its macro lists', () => {
    const b = optnegReply(6, 0x113, 0x1000, new Map([[2, 'i {auth_authen}']]));
    expect(b).toEqual(Buffer.concat([u32(1 + 12 + 4 + 16), Buffer.from('O'), u32(6), u32(0x113), u32(0x1000), u32(2), Buffer.from('i {auth_authen}\0')]));
  });

  it('writes reply codes on one line with % doubled', () => {
    expect(replyCode('451', '4.3.0', 'a\r\nb 100%').subarray(4).toString()).toBe('y451 4.3.0 a b 100%%\0');
  });

  it('writes header insertions and changes with their index', () => {
    expect(insertHeader(0, 'X', Buffer.from(' v'))).toEqual(pkt('i', u32(0), z('X'), z(' v')));
    expect(changeHeader(2, 'X', Buffer.alloc(0))).toEqual(pkt('m', u32(2), z('X'), z('')));
  });

  it('refuses a body chunk over 65535 bytes', () => {
    expect(() => replaceBody(Buffer.alloc(65536))).toThrow(RangeError);
  });
});
