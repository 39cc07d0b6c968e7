/**
 * data-phase.ts against the parser it replaces: both are driven over the same input, cut into
 * chunks many ways, and everything observable is compared (emitted bytes, byte counts after
 * each chunk, where DATA ended and what was handed on, size limit, stream errors).
 */
import { createHash } from 'node:crypto';
import { PassThrough, type Readable } from 'node:stream';
import { setImmediate as tick } from 'node:timers/promises';
import type { SMTPServerDataStream } from 'smtp-server';
import { SMTPStream } from 'smtp-server/lib/smtp-stream';
import '../../../src/listener/smtp-server';
import { feedDataStream } from '../../../src/listener/smtp-server/data-phase';
import { startSink } from '../../helpers/sink';
import { startHarness } from '../../helpers/postseal';
import { TestClient } from '../../helpers/smtp-client';

type Feed = SMTPStream['_feedDataStream'];

/** smtp-server's own parser, from a copy of the library that data-phase.ts has not replaced it in. */
function libraryParser(): Feed {
  let feed: Feed | undefined;
  jest.isolateModules(() => {
    const fresh = require('smtp-server/lib/smtp-stream') as typeof import('smtp-server/lib/smtp-stream');
    feed = fresh.SMTPStream.prototype._feedDataStream;
  });
  if (!feed) throw new Error('smtp-server did not load');
  return feed;
}
const original = libraryParser();
interface RunOptions {
  maxBytes?: number;
  /** Replaces the data stream by one this small, read one chunk per event-loop turn. */
  highWaterMark?: number;
  /** What the application did to the data stream before any input came: it is not read then. */
  stopped?: 'end' | 'destroy';
}

/** Everything a parser does with the input that anyone can observe. */
async function run(feed: Feed, chunks: Buffer[], opts: RunOptions = {}) {
  const parser = new SMTPStream();
  // An own property: the library's parser calls this._feedDataStream again after each escape dot.
  parser._feedDataStream = feed;
  const commands: string[] = [];
  parser.oncommand = (line, next) => {
    commands.push(line.toString('latin1'));
    next?.();
  };
  let stream = parser.startDataMode(opts.maxBytes);
  if (opts.highWaterMark !== undefined) {
    stream = Object.assign(new PassThrough({ highWaterMark: opts.highWaterMark }), { byteLength: 0, sizeExceeded: false }) as SMTPServerDataStream;
    parser._dataStream = stream;
  }
  const errors: string[] = [];
  stream.on('error', (err: NodeJS.ErrnoException) => errors.push(err.code ?? err.message));
  if (opts.stopped) stream[opts.stopped]();
  const received = opts.stopped ? Promise.resolve(Buffer.alloc(0)) : readAll(stream, opts.highWaterMark !== undefined);
  const end: { inChunk?: number; remainder?: string } = {};
  const endDataMode = parser._endDataMode;
  let current = 0;
  parser._endDataMode = function (this: SMTPStream, buf, remainder, callback) {
    end.inChunk = current;
    end.remainder = remainder.toString('latin1');
    endDataMode.call(this, buf, remainder, callback);
    this.continue();
  };
  const countsAfterChunk: number[] = [];
  for (; current < chunks.length; current++) {
    const dataMode = parser._dataMode;
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error | null) => (err ? reject(err) : resolve());
      if (dataMode) feed.call(parser, chunks[current], done);
      else parser._write(chunks[current], 'buffer', done);
    });
    countsAfterChunk.push(parser.dataBytes);
  }
  if (end.inChunk === undefined && !opts.stopped) stream.end();
  const data = await received;
  // Stream errors are emitted a turn later.
  await tick();
  return {
    data: data.length <= 4096 ? data.toString('latin1') : createHash('sha256').update(data).digest('hex'),
    dataLength: data.length,
    countsAfterChunk,
    end,
    commands,
    errors,
    byteLength: stream.byteLength,
    sizeExceeded: stream.sizeExceeded,
  };
}

async function readAll(stream: Readable, slowly: boolean): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) {
    chunks.push(c as Buffer);
    if (slowly) await tick();
  }
  return Buffer.concat(chunks);
}

async function expectSame(chunks: Buffer[], opts: RunOptions = {}) {
  const theirs = await run(original, chunks, opts);
  expect(await run(feedDataStream, chunks, opts)).toEqual(theirs);
  return theirs;
}

function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** Cuts input the way a socket might: many 1-byte and few-byte pieces, and some up to maxChunk. */
function cut(input: Buffer, rand: () => number, maxChunk: number): Buffer[] {
  const chunks: Buffer[] = [];
  for (let i = 0; i < input.length; ) {
    const r = rand();
    const n = r < 0.3 ? 1 : r < 0.6 ? 1 + Math.floor(rand() * 8) : 1 + Math.floor(rand() * maxChunk);
    chunks.push(input.subarray(i, i + n));
    i += n;
  }
  return chunks;
}

async function expectSameCutAnyWay(input: Buffer | string, cuts: number, opts: RunOptions & { maxChunk?: number } = {}) {
  const bytes = Buffer.isBuffer(input) ? input : Buffer.from(input, 'latin1');
  const rand = random(bytes.length * 7919 + cuts);
  await expectSame([bytes], opts);
  for (let i = 0; i < cuts; i++) await expectSame(cut(bytes, rand, opts.maxChunk ?? 64), opts);
}

const lines = (...l: string[]) => l.map((x) => `${x}\r\n`).join('');

/** A body of about `size` bytes with dot-stuffed lines among ordinary ones. */
function body(size: number, rand: () => number): string {
  const kinds = ['..', '...', '..x', '.. leading dots', 'plain text line of moderate length', '', 'x.', 'a.b.c'];
  let out = '';
  while (out.length < size) out += `${kinds[Math.floor(rand() * kinds.length)]}${'y'.repeat(Math.floor(rand() * 90))}\r\n`;
  return out;
}

describe('DATA phase parser: the same observable behaviour as smtp-server 3.21.6', () => {
  it('is installed on the library prototype', () => {
    expect(SMTPStream.prototype._feedDataStream).toBe(feedDataStream);
    expect(feedDataStream).not.toBe(original);
  });

  it('plain text ends at CRLF.CRLF, however it is cut', async () => {
    const r = await expectSame([Buffer.from(lines('Subject: x', '', 'hello', 'world', '.'))]);
    expect(r.data).toBe(lines('Subject: x', '', 'hello', 'world'));
    await expectSameCutAnyWay(lines('Subject: x', '', 'hello', 'world', '.'), 200);
  });

  it('removes the escape dot of dot-stuffed lines, however they are cut', async () => {
    const r = await expectSame([Buffer.from(lines('a', '..', '...', '..x', '.', 'NOOP'))]);
    expect(r.data).toBe(lines('a', '.', '..', '.x'));
    expect(r.commands).toEqual(['NOOP']);
    await expectSameCutAnyWay(lines('a', '..', '...', '..x', '..', '..', 'b', '.'), 300);
  });

  it('a first line ".." is content ".", and DATA does not end early when its escape dot comes in a chunk of its own', async () => {
    const r = await expectSame([Buffer.from(lines('..', 'rest', '.'))]);
    expect(r.data).toBe(lines('.', 'rest'));
    expect((await expectSame([Buffer.from('.'), Buffer.from('.'), Buffer.from(lines('', '.', 'NOOP'))])).data).toBe(lines('.'));
    expect((await expectSame([Buffer.from('..'), Buffer.from('\r\nQUIT\r\n')])).end).toEqual({});
    await expectSameCutAnyWay(lines('..', '.', 'MAIL FROM:<evil@example.org>', '.'), 300);
  });

  it('a lone ".\\r\\n" first ends DATA with an empty message and hands on what follows', async () => {
    const r = await expectSame([Buffer.from(lines('.', 'MAIL FROM:<a@example.org>', 'RCPT TO:<b@example.net>'))]);
    expect(r).toMatchObject({ data: '', byteLength: 0, end: { inChunk: 0, remainder: lines('MAIL FROM:<a@example.org>', 'RCPT TO:<b@example.net>') } });
    await expectSameCutAnyWay(lines('.', 'MAIL FROM:<a@example.org>', 'QUIT'), 100);
  });

  it('finds the terminator at every offset across two and three chunks', async () => {
    const input = Buffer.from(`${lines('one', '..two', 'three')}.\r\nRSET\r\nNOOP\r\nQU`);
    for (let a = 1; a < input.length; a++) {
      await expectSame([input.subarray(0, a), input.subarray(a)]);
      for (let b = a + 1; b < input.length; b++) await expectSame([input.subarray(0, a), input.subarray(a, b), input.subarray(b)]);
    }
  });

  it('pipelined commands after the dot reach the command parser intact', async () => {
    const r = await expectSame([Buffer.from(`${lines('x', '..')}.\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n`)]);
    expect(r.commands).toEqual(['MAIL FROM:<a@example.org>', 'RCPT TO:<b@example.net>', 'DATA']);
    await expectSameCutAnyWay(`${lines('x', '..')}.\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n`, 200);
  });

  it('a bare LF before a dot neither ends DATA nor keeps an escape dot (as the library does)', async () => {
    expect((await expectSame([Buffer.from('a\n.\r\nb\r\n.\r\n')])).data).toBe('a\n.\r\nb\r\n');
    expect((await expectSame([Buffer.from('a\n..b\r\n.\r\n')])).data).toBe('a\n.b\r\n');
    expect((await expectSame([Buffer.from('\n..\r\n.\r\n')])).data).toBe('\n..\r\n');
    for (const input of ['a\n.\nb\r\n.\r\n', 'a\r.\r\nb\r\n.\r\n', 'a\r\n.\nb\r\n.\r\n', '\n.\r\n.\r\n', '\r\n.\r\n']) await expectSameCutAnyWay(input, 50);
  });

  it('random bytes rich in CR, LF and dots behave the same, terminator or not', async () => {
    const rand = random(1);
    const alphabet = [0x0d, 0x0a, 0x2e, 0x2e, 0x61, 0x00, 0xff];
    for (let i = 0; i < 400; i++) {
      const input = Buffer.from(Array.from({ length: 1 + Math.floor(rand() * 40) }, () => alphabet[Math.floor(rand() * alphabet.length)]));
      await expectSameCutAnyWay(input, 5, { maxChunk: 16 });
    }
  });

  it('binary bodies of every byte value behave the same', async () => {
    const rand = random(2);
    const bin = Buffer.from(Array.from({ length: 64 * 1024 }, () => Math.floor(rand() * 256)));
    await expectSameCutAnyWay(Buffer.concat([bin, Buffer.from('\r\n.\r\nQUIT\r\n')]), 5, { maxChunk: 8192 });
  });

  it('1 MB bodies with dot-stuffed lines behave the same, in socket-sized and odd chunks', async () => {
    const rand = random(3);
    const input = Buffer.from(`${body(1024 * 1024, rand)}.\r\nQUIT\r\n`, 'latin1');
    const r = await expectSame(sliced(input, 65536));
    expect(r.end.remainder).toBe('QUIT\r\n');
    await expectSameCutAnyWay(input, 2, { maxChunk: 65536 });
  });

  it('counts bytes against the size limit the same way', async () => {
    const rand = random(4);
    const input = `${body(4000, rand)}.\r\n`;
    const r = await expectSame([Buffer.from(input)], { maxBytes: 1000 });
    expect(r.sizeExceeded).toBe(true);
    await expectSameCutAnyWay(input, 20, { maxBytes: 1000, maxChunk: 512 });
  });

  it('a data stream the application ended or destroyed gets no more writes, and DATA still ends at the dot', async () => {
    const input = `${lines('a', '..', 'b'.repeat(300))}.\r\nNOOP\r\n`;
    for (const stopped of ['end', 'destroy'] as const) {
      const r = await expectSame([Buffer.from(input)], { stopped });
      expect(r).toMatchObject({ errors: [], commands: ['NOOP'], byteLength: input.length - 'NOOP\r\n'.length - 4 });
      await expectSameCutAnyWay(input, 20, { stopped });
    }
  });

  it('a full data stream read slowly gets the same bytes', async () => {
    const rand = random(5);
    await expectSameCutAnyWay(`${body(200 * 1024, rand)}.\r\nQUIT\r\n`, 3, { highWaterMark: 64, maxChunk: 65536 });
  });
});

function sliced(input: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < input.length; i += size) out.push(input.subarray(i, i + size));
  return out;
}

describe('DATA phase parser: back-pressure', () => {
  const fullStream = () => {
    const parser = new SMTPStream();
    parser.startDataMode();
    parser._dataStream = Object.assign(new PassThrough({ highWaterMark: 16 }), { byteLength: 0, sizeExceeded: false }) as SMTPServerDataStream;
    return { parser, stream: parser._dataStream };
  };

  it('asks for the next chunk only once a full data stream has drained', async () => {
    const { parser, stream } = fullStream();
    let taken = false;
    feedDataStream.call(parser, Buffer.from(lines('a'.repeat(100), '..', 'b'.repeat(100))), () => (taken = true));
    await tick();
    expect(taken).toBe(false);
    stream.resume();
    await tick();
    await tick();
    expect(taken).toBe(true);
  });

  it('asks for the next chunk when a full data stream is destroyed instead of drained', async () => {
    const { parser, stream } = fullStream();
    let taken = false;
    feedDataStream.call(parser, Buffer.from('x'.repeat(100)), () => (taken = true));
    await tick();
    expect(taken).toBe(false);
    stream.destroy();
    await tick();
    expect(taken).toBe(true);
  });
});

describe('DATA phase parser: loading', () => {
  it('refuses to load against another smtp-server version', () => {
    jest.isolateModules(() => {
      jest.doMock('smtp-server/package.json', () => ({ version: '3.22.0' }));
      expect(() => require('../../../src/listener/smtp-server')).toThrow(/3\.21\.6 \(found 3\.22\.0\)/);
      jest.dontMock('smtp-server/package.json');
    });
  });
});

describe('DATA phase parser over a real socket', () => {
  it('a message with many dot-stuffed lines, sent in many small TCP writes, arrives byte-exact', async () => {
    const sink = await startSink();
    const h = await startHarness({ forwardPort: sink.port, banks: { default: { maxMessageSizeBytes: 1_000_000 } } });
    const rand = random(6);
    const feeds = jest.spyOn(SMTPStream.prototype, '_feedDataStream');
    const message = `From: a@example.org\r\nTo: b@example.net\r\nSubject: dots\r\n\r\n${body(30 * 1024, rand).replace(/^\.\.(?=\r)/gm, '.')}.end\r\n`;
    const stuffed = Buffer.from(`${message.replace(/^\./gm, '..')}.\r\n`, 'latin1');
    const c = await TestClient.connect(h.app.portOf('default'));
    c.socket.setNoDelay(true);
    await c.cmd('EHLO x');
    await c.cmd('MAIL FROM:<a@example.org>');
    await c.cmd('RCPT TO:<b@example.net>');
    expect((await c.cmd('DATA')).code).toBe(354);
    for (const part of cut(stuffed, rand, 512)) {
      await new Promise<void>((resolve) => c.socket.write(part, () => resolve()));
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const final = await c.read();
    await c.quit();
    await h.close();
    await sink.close();
    const chunksTaken = feeds.mock.calls.length;
    feeds.mockRestore();
    // Loopback may merge some writes, not most of them.
    expect(chunksTaken).toBeGreaterThan(50);
    expect(final.code).toBe(250);
    expect(sink.received).toHaveLength(1);
    expect(sink.received[0].data.toString('latin1')).toBe(`X-Postseal-Trace: filter.test default\r\n${message}`);
  });
});
