import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ClamdClient, type ClamdEndpoint, type ClamdOptions } from '../../../src/lib/clamd';
import { EICAR, EICAR_NAME, TEST_VIRUS_MARKER, TEST_VIRUS_NAME, messageWithAttachment, startClamd, zipOf, type ClamdServer } from '../../helpers/clamd';
import { freePort } from '../../helpers/redis-server';

const options = (endpoint: ClamdEndpoint, o: Partial<ClamdOptions> = {}): ClamdOptions => ({
  endpoint,
  connectTimeoutMs: 2000,
  timeoutMs: 5000,
  chunkBytes: 16384,
  maxStreamBytes: 10 * 1024 * 1024,
  ...o,
});

async function* chunksOf(data: string | Buffer, size = 4096): AsyncGenerator<Buffer> {
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(data, 'latin1');
  for (let at = 0; at < buf.length; at += size) yield buf.subarray(at, at + size);
}

const CLEAN = 'From: <a@example.org>\r\nTo: <b@example.net>\r\nSubject: hello\r\n\r\nNothing to see here.\r\n';

describe('the clamd client against a real clamd', () => {
  let clamd: ClamdServer;
  let tcp: ClamdClient;
  let unix: ClamdClient;
  beforeAll(async () => {
    clamd = await startClamd();
    tcp = new ClamdClient(options({ host: '127.0.0.1', port: clamd.port }));
    // Over the unix socket in kept sessions (IDSESSION), over TCP a connection per scan: both ways against the real clamd.
    unix = new ClamdClient(options({ socket: clamd.socket }, { keepConnections: 4 }));
  }, 30_000);
  afterAll(async () => {
    unix?.close();
    await clamd?.stop();
  });

  it('builds the EICAR test file the signature expects', () => {
    expect(createHash('md5').update(EICAR).digest('hex')).toBe('44d88612fea8a8f36de82e1278abb02f');
  });

  it('gets PONG over TCP and over the unix socket', async () => {
    expect(await tcp.ping()).toEqual({ kind: 'pong' });
    expect(await unix.ping()).toEqual({ kind: 'pong' });
  });

  it('gets PONG inside an IDSESSION, as kept connections need', async () => {
    expect(await unix.pingInSession()).toEqual({ kind: 'pong' });
    expect(await tcp.pingInSession()).toEqual({ kind: 'pong' });
  });

  it("reads clamd's version", async () => {
    const v = await unix.version();
    expect(v).toMatchObject({ kind: 'version', version: expect.stringMatching(/^ClamAV \d+\.\d+/) });
  });

  it('says clean for a clean message', async () => {
    expect(await unix.scan(() => chunksOf(CLEAN))).toEqual({ kind: 'clean' });
    expect(await tcp.scan(() => chunksOf(CLEAN))).toEqual({ kind: 'clean' });
  });

  it('finds EICAR in a zip inside a base64 attachment of a multipart message, which clamd decodes itself', async () => {
    const msg = messageWithAttachment({ filename: 'invoice.zip', attachment: zipOf({ 'eicar.com': EICAR }) });
    expect(await tcp.scan(() => chunksOf(msg))).toEqual({ kind: 'found', names: [EICAR_NAME] });
  });

  it('finds a body signature anywhere in the message, sent in chunks smaller than the signature', async () => {
    const msg = `${CLEAN}${'filler line\r\n'.repeat(1000)}${TEST_VIRUS_MARKER}\r\n`;
    const small = new ClamdClient(options({ socket: clamd.socket }, { chunkBytes: 7 }));
    expect(await small.scan(() => chunksOf(msg, 1000))).toEqual({ kind: 'found', names: [TEST_VIRUS_NAME] });
  });

  it("reports too-big when the message passes clamd's StreamMaxLength, or a cut stream when clamd's reset ate that answer", async () => {
    // Which of the two is a race between clamd's answer and its kernel's reset (client.ts).
    const big = Buffer.alloc(clamd.streamMaxBytes + 1, 'a');
    const r = await unix.scan(() => chunksOf(big, 65536));
    if (r.kind === 'too-big') expect(r.detail).toContain('StreamMaxLength');
    else expect(r).toEqual({ kind: 'failed', reason: 'closed', detail: expect.stringContaining('most likely at its StreamMaxLength') });
  });

  it('scans a message of exactly StreamMaxLength bytes', async () => {
    const exact = Buffer.alloc(clamd.streamMaxBytes, 'a');
    expect(await unix.scan(() => chunksOf(exact, 65536))).toEqual({ kind: 'clean' });
  });

  it('stops sending at maxStreamBytes and reports too-big without waiting for clamd', async () => {
    const client = new ClamdClient(options({ socket: clamd.socket }, { maxStreamBytes: 1000 }));
    let pulled = 0;
    async function* counted() {
      for await (const c of chunksOf(Buffer.alloc(100_000, 'a'), 500)) {
        pulled += c.length;
        yield c;
      }
    }
    expect(await client.scan(counted)).toEqual({ kind: 'too-big', detail: expect.stringContaining('maxStreamBytes') });
    expect(pulled).toBeLessThanOrEqual(1500);
  });
});

describe('the clamd client when clamd is not there', () => {
  it('reports unreachable for a unix socket that does not exist', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'postseal-clamd-none-'));
    try {
      const r = await new ClamdClient(options({ socket: path.join(dir, 'none.sock') })).scan(() => chunksOf(CLEAN));
      expect(r).toMatchObject({ kind: 'failed', reason: 'unreachable', detail: expect.stringContaining('ENOENT') });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports unreachable for a TCP port nobody listens on', async () => {
    const r = await new ClamdClient(options({ host: '127.0.0.1', port: await freePort() })).ping();
    expect(r).toMatchObject({ kind: 'failed', reason: 'unreachable', detail: expect.stringContaining('ECONNREFUSED') });
  });
});

/** Polls `cond` (the server side hears a close a moment after the client made it); fails after 2 s. */
async function until(cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 2000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met within 2 s');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A fake clamd for the answers a real one cannot be made to give. */
async function scripted(onConnection: (sock: net.Socket) => void) {
  const sockets = new Set<net.Socket>();
  const closed: net.Socket[] = [];
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => closed.push(sock));
    sock.on('error', () => undefined);
    onConnection(sock);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  return {
    endpoint: { host: '127.0.0.1', port },
    closed,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** Reads everything and answers `answer` once the INSTREAM end marker (or a command's NUL) arrived. */
const answering = (answer: string | Buffer) => (sock: net.Socket) => {
  let seen = Buffer.alloc(0);
  sock.on('data', (d: Buffer) => {
    seen = Buffer.concat([seen.subarray(-8), d]);
    if (seen.subarray(-4).equals(Buffer.alloc(4)) || seen.subarray(-1).equals(Buffer.from([0]))) sock.end(answer);
  });
};

describe('the clamd client against a scanner that misbehaves', () => {
  it('calls an answer it cannot read garbage', async () => {
    const s = await scripted(answering('stream: maybe\0'));
    try {
      expect(await new ClamdClient(options(s.endpoint)).scan(() => chunksOf(CLEAN))).toMatchObject({ kind: 'failed', reason: 'garbage' });
    } finally {
      await s.close();
    }
  });

  it('calls a PING answer other than PONG garbage, and cuts control characters out of what it reports', async () => {
    const s = await scripted(answering('PANG\x1b[31m\0'));
    try {
      const r = await new ClamdClient(options(s.endpoint)).ping();
      expect(r).toMatchObject({ kind: 'failed', reason: 'garbage' });
      expect(r.kind === 'failed' && r.detail).not.toMatch(/\x1b/);
    } finally {
      await s.close();
    }
  });

  it('tells a scanner that answers PING but not inside a session (no "1: " id) by its session PING', async () => {
    const s = await scripted(answering('PONG\0'));
    try {
      const client = new ClamdClient(options(s.endpoint));
      expect(await client.ping()).toEqual({ kind: 'pong' });
      expect(await client.pingInSession()).toMatchObject({ kind: 'failed', reason: 'garbage', detail: expect.stringContaining('PING in a session answered: PONG') });
    } finally {
      await s.close();
    }
  });

  it('reports an ERROR answer as a scanner error', async () => {
    const s = await scripted(answering('Error processing command. ERROR\0'));
    try {
      expect(await new ClamdClient(options(s.endpoint)).scan(() => chunksOf(CLEAN))).toMatchObject({ kind: 'failed', reason: 'error' });
    } finally {
      await s.close();
    }
  });

  it('keeps the virus names printable and bounded', async () => {
    const s = await scripted(answering(`stream: Evil\r\nName${'x'.repeat(500)} FOUND\0`));
    try {
      const r = await new ClamdClient(options(s.endpoint)).scan(() => chunksOf(CLEAN));
      expect(r.kind).toBe('found');
      const name = r.kind === 'found' ? r.names[0] : '';
      expect(name).toMatch(/^[\x20-\x7e]+$/);
      expect(name.length).toBeLessThanOrEqual(103);
    } finally {
      await s.close();
    }
  });

  it('calls an endless answer garbage', async () => {
    const s = await scripted((sock) => sock.on('data', () => sock.write(Buffer.alloc(65536, 'z'))));
    try {
      expect(await new ClamdClient(options(s.endpoint)).ping()).toMatchObject({ kind: 'failed', reason: 'garbage' });
    } finally {
      await s.close();
    }
  });

  it('reports a connection closed without an answer', async () => {
    const s = await scripted((sock) => sock.once('data', () => sock.end()));
    try {
      expect(await new ClamdClient(options(s.endpoint)).scan(() => chunksOf(CLEAN))).toMatchObject({ kind: 'failed', reason: 'closed' });
    } finally {
      await s.close();
    }
  });

  it('times out a scanner that reads the message and never answers, within its timeoutMs', async () => {
    const s = await scripted((sock) => sock.resume());
    try {
      const started = Date.now();
      const r = await new ClamdClient(options(s.endpoint, { timeoutMs: 300 })).scan(() => chunksOf(CLEAN));
      expect(r).toMatchObject({ kind: 'failed', reason: 'timeout' });
      expect(Date.now() - started).toBeLessThan(2000);
      await until(() => s.closed.length === 1);
    } finally {
      await s.close();
    }
  });

  it('holds back the message while the scanner does not read, instead of buffering it', async () => {
    const s = await scripted((sock) => sock.pause());
    let pulled = 0;
    let finished = false;
    async function* endless() {
      try {
        for (;;) {
          pulled += 65536;
          yield Buffer.alloc(65536, 'm');
        }
      } finally {
        finished = true;
      }
    }
    try {
      const ac = new AbortController();
      const scan = new ClamdClient(options(s.endpoint, { timeoutMs: 60_000, maxStreamBytes: 1024 ** 3 })).scan(endless, ac.signal);
      await new Promise((r) => setTimeout(r, 500));
      // What the kernel's socket buffers hold, and one chunk in hand: a few MiB, not the gigabyte on offer.
      expect(pulled).toBeLessThan(16 * 1024 * 1024);
      ac.abort(new Error('stage timed out'));
      await expect(scan).rejects.toThrow('stage timed out');
      expect(finished).toBe(true);
    } finally {
      await s.close();
    }
  });

  it('destroys the connection when the caller aborts while waiting for the answer', async () => {
    const s = await scripted((sock) => sock.resume());
    try {
      const ac = new AbortController();
      const scan = new ClamdClient(options(s.endpoint)).scan(() => chunksOf(CLEAN), ac.signal);
      setTimeout(() => ac.abort(new Error('deadline')), 100);
      await expect(scan).rejects.toThrow('deadline');
      await until(() => s.closed.length === 1);
    } finally {
      await s.close();
    }
  });

  it('does not connect at all when the signal is already aborted', async () => {
    const s = await scripted((sock) => sock.resume());
    try {
      const ac = new AbortController();
      ac.abort(new Error('too late'));
      await expect(new ClamdClient(options(s.endpoint)).ping(ac.signal)).rejects.toThrow('too late');
      await new Promise((r) => setTimeout(r, 50));
      expect(s.closed).toHaveLength(0);
    } finally {
      await s.close();
    }
  });
});

/**
 * A fake clamd that speaks IDSESSION: reads the INSTREAM framing and answers each command
 * with `answer(id, connection)` ("<id>: ..." is added unless the text starts with a digit);
 * null keeps silent. Counts connections.
 */
async function sessions(answer: (id: number, connection: number, sock: net.Socket) => string | null, onStart?: (id: number, connection: number, sock: net.Socket) => void) {
  let connections = 0;
  const s = await scripted((sock) => {
    const connection = ++connections;
    let buf = Buffer.alloc(0);
    let id = 0;
    let inStream = false;
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (!inStream) {
          const nul = buf.indexOf(0);
          if (nul < 0) return;
          const command = buf.subarray(0, nul).toString('latin1');
          buf = buf.subarray(nul + 1);
          if (command === 'zINSTREAM') {
            id++;
            inStream = true;
            onStart?.(id, connection, sock);
            if (sock.destroyed) return;
          } else if (command === 'zEND') sock.end();
          continue;
        }
        if (buf.length < 4) return;
        const n = buf.readUInt32BE(0);
        if (buf.length < 4 + n) return;
        buf = buf.subarray(4 + n);
        if (n === 0) {
          inStream = false;
          const text = answer(id, connection, sock);
          if (text !== null && !sock.destroyed) sock.write(/^\d/.test(text) ? text : `${id}: ${text}`);
        }
      }
    });
  });
  return { ...s, connections: () => connections };
}

describe('the clamd client in kept sessions (IDSESSION)', () => {
  const kept = (endpoint: ClamdEndpoint, o: Partial<ClamdOptions> = {}) => new ClamdClient(options(endpoint, { keepConnections: 2, ...o }));

  it('scans a run of clean and infected messages with the real clamd, each answer its own, clean ones on one kept connection', async () => {
    const clamd = await startClamd();
    // A relay in front of clamd's unix socket, to count the connections made.
    let connections = 0;
    const relay = net.createServer((inbound) => {
      connections++;
      const out = net.connect({ path: clamd.socket });
      inbound.pipe(out).pipe(inbound);
      inbound.on('error', () => out.destroy());
      out.on('error', () => inbound.destroy());
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', () => r()));
    const client = kept({ host: '127.0.0.1', port: (relay.address() as net.AddressInfo).port });
    try {
      const infected = messageWithAttachment({ filename: 'eicar.zip', attachment: zipOf({ 'eicar.com': EICAR }) });
      for (let i = 0; i < 3; i++) expect(await client.scan(() => chunksOf(CLEAN))).toEqual({ kind: 'clean' });
      expect(connections).toBe(1);
      expect(await client.scan(() => chunksOf(infected))).toEqual({ kind: 'found', names: [EICAR_NAME] });
      // After a FOUND the connection is not read again (AllMatchScan may still send names): a new one.
      expect(await client.scan(() => chunksOf(CLEAN))).toEqual({ kind: 'clean' });
      expect(connections).toBe(2);
      // Two at once: two sessions, both kept (keepConnections 2).
      const both = await Promise.all([client.scan(() => chunksOf(CLEAN)), client.scan(() => chunksOf(`${CLEAN}${TEST_VIRUS_MARKER}\r\n`))]);
      expect(both).toEqual([{ kind: 'clean' }, { kind: 'found', names: [TEST_VIRUS_NAME] }]);
    } finally {
      client.close();
      await new Promise<void>((r) => relay.close(() => r()));
      await clamd.stop();
    }
  }, 30_000);

  it('tries once more on a new connection when clamd closed the kept one before the message went out, reading the message again', async () => {
    // clamd (a restart) drops the kept connection as the second message starts to arrive.
    const s = await sessions(
      () => 'stream: OK\0',
      (id, connection, sock) => {
        if (connection === 1 && id === 2) sock.destroy();
      },
    );
    const client = kept(s.endpoint);
    const big = Buffer.alloc(8 * 1024 * 1024, 'm');
    let opened = 0;
    const open = () => {
      opened++;
      return chunksOf(big, 65536);
    };
    try {
      expect(await client.scan(open)).toEqual({ kind: 'clean' });
      expect(await client.scan(open)).toEqual({ kind: 'clean' });
      expect(opened).toBe(3);
      expect(s.connections()).toBe(2);
    } finally {
      client.close();
      await s.close();
    }
  });

  it('does not send again when the kept connection closes after the whole message went out (clamd crashed on it): a failure', async () => {
    const s = await sessions((id, connection, sock) => {
      if (connection === 1 && id === 2) {
        sock.destroy();
        return null;
      }
      return 'stream: OK\0';
    });
    const client = kept(s.endpoint);
    let opened = 0;
    const open = () => {
      opened++;
      return chunksOf(CLEAN);
    };
    try {
      expect(await client.scan(open)).toEqual({ kind: 'clean' });
      expect(await client.scan(open)).toMatchObject({ kind: 'failed', reason: 'closed' });
      expect(opened).toBe(2);
      expect(await client.scan(open)).toEqual({ kind: 'clean' });
      expect(s.connections()).toBe(2);
    } finally {
      client.close();
      await s.close();
    }
  });

  it('calls an answer with another command id garbage and does not use that connection again', async () => {
    const s = await sessions((id) => `${id + 1}: stream: OK\0`);
    const client = kept(s.endpoint);
    try {
      expect(await client.scan(() => chunksOf(CLEAN))).toMatchObject({ kind: 'failed', reason: 'garbage' });
      expect(await client.scan(() => chunksOf(CLEAN))).toMatchObject({ kind: 'failed', reason: 'garbage' });
      expect(s.connections()).toBe(2);
    } finally {
      client.close();
      await s.close();
    }
  });

  it('calls two answers to one command garbage ("OK" then "FOUND"), and hands neither to the next scan', async () => {
    const s = await sessions((id, connection) => (connection === 1 ? `${id}: stream: OK\0${id}: stream: B FOUND\0` : 'stream: OK\0'));
    const client = kept(s.endpoint);
    try {
      expect(await client.scan(() => chunksOf(CLEAN))).toMatchObject({ kind: 'failed', reason: 'garbage' });
      expect(await client.scan(() => chunksOf(CLEAN))).toEqual({ kind: 'clean' });
      expect(s.connections()).toBe(2);
    } finally {
      client.close();
      await s.close();
    }
  });

  it('calls a clean answer that comes before the end of the message garbage, kept connection or not', async () => {
    // Answers as soon as the command arrives, before any of the message.
    const early = () => (sock: net.Socket) => sock.once('data', (d: Buffer) => (d.includes('zIDSESSION') ? sock.write('1: stream: OK\0') : sock.end('stream: OK\0')));
    const s = await scripted(early());
    const big = Buffer.alloc(4 * 1024 * 1024, 'm');
    try {
      expect(await kept(s.endpoint).scan(() => chunksOf(big, 65536))).toMatchObject({ kind: 'failed', reason: 'garbage' });
      expect(await new ClamdClient(options(s.endpoint)).scan(() => chunksOf(big, 65536))).toMatchObject({ kind: 'failed', reason: 'garbage' });
    } finally {
      await s.close();
    }
  });

  it('closes the connection when reading the message fails, and passes the error on', async () => {
    const s = await sessions(() => 'stream: OK\0');
    const client = kept(s.endpoint);
    async function* failing(): AsyncGenerator<Buffer> {
      yield Buffer.from(CLEAN);
      throw new Error('spool read failed');
    }
    try {
      await expect(client.scan(failing)).rejects.toThrow('spool read failed');
      await until(() => s.closed.length === 1);
    } finally {
      client.close();
      await s.close();
    }
  });

  it('times out a kept connection that reads and never answers, and opens a new one afterwards', async () => {
    const s = await sessions((id, connection) => (connection === 1 && id === 2 ? null : 'stream: OK\0'));
    const client = kept(s.endpoint, { timeoutMs: 300 });
    try {
      expect(await client.scan(() => chunksOf(CLEAN))).toEqual({ kind: 'clean' });
      expect(await client.scan(() => chunksOf(CLEAN))).toMatchObject({ kind: 'failed', reason: 'timeout' });
      expect(await client.scan(() => chunksOf(CLEAN))).toEqual({ kind: 'clean' });
      expect(s.connections()).toBe(2);
    } finally {
      client.close();
      await s.close();
    }
  });

  it('destroys a kept connection when the caller aborts while waiting, and never hands it out again', async () => {
    const s = await sessions((id, connection) => (connection === 1 && id === 2 ? null : 'stream: OK\0'));
    const client = kept(s.endpoint);
    try {
      expect(await client.scan(() => chunksOf(CLEAN))).toEqual({ kind: 'clean' });
      const ac = new AbortController();
      const scan = client.scan(() => chunksOf(CLEAN), ac.signal);
      setTimeout(() => ac.abort(new Error('deadline')), 100);
      await expect(scan).rejects.toThrow('deadline');
      await until(() => s.closed.length === 1);
      expect(await client.scan(() => chunksOf(CLEAN))).toEqual({ kind: 'clean' });
      expect(s.connections()).toBe(2);
    } finally {
      client.close();
      await s.close();
    }
  });

  it('ends idle connections past keepConnections with END', async () => {
    let ended = 0;
    const s = await sessions(() => 'stream: OK\0');
    const client = kept(s.endpoint, { keepConnections: 1 });
    try {
      await Promise.all([1, 2, 3].map(() => client.scan(() => chunksOf(CLEAN))));
      expect(s.connections()).toBe(3);
      await until(() => s.closed.length === 2);
      ended = s.closed.length;
      expect(ended).toBe(2);
      expect(await client.scan(() => chunksOf(CLEAN))).toEqual({ kind: 'clean' });
      expect(s.connections()).toBe(3);
    } finally {
      client.close();
      await s.close();
    }
  });
});
