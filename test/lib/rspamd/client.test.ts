/**
 * The rspamd client against Debian's real rspamd (test/helpers/rspamd.ts), over TCP with its
 * keep-alive agent and over its unix socket; malformed, slow and failing answers from a
 * scripted HTTP server; abort.
 */
import http, { type IncomingHttpHeaders } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { isPostsealError } from '../../../src/errors';
import { createRspamdClient, parseCheckV2, type RspamdClient } from '../../../src/lib/rspamd/client';
import type { ScanSource } from '../../../src/lib/spamd/client';
import { RSPAMD_REJECT, startRspamd, type Rspamd } from '../../helpers/rspamd';
import { GTUBE, TAG_SUBJECT, TAG_SUBJECT_POINTS } from '../../helpers/spamd';

function source(text: string): ScanSource {
  const bytes = Buffer.from(text, 'utf8');
  return {
    size: bytes.length,
    async *open() {
      for (let i = 0; i < bytes.length; i += 1000) yield bytes.subarray(i, i + 1000);
    },
  };
}

const mail = (subject: string, body: string) => `From: <a@remote.test>\r\nTo: <b@example.test>\r\nSubject: ${subject}\r\n\r\n${body}\r\n`;

const failsWith = async (p: Promise<unknown>) => {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isPostsealError(err, 'SPAM_SCANNER_FAILED')).toBe(true);
};

describe('the rspamd client with a real rspamd', () => {
  let rspamd: Rspamd;
  let client: RspamdClient;
  beforeAll(async () => {
    rspamd = await startRspamd();
    client = createRspamdClient({ host: rspamd.host, port: rspamd.port, timeoutMs: 10000 });
  }, 30000);
  afterAll(async () => {
    client?.close();
    await rspamd?.stop();
  });

  it("gives GTUBE rspamd's reject action at its reject score", async () => {
    const r = await client.check(source(mail('hi', GTUBE)), { from: 'a@remote.test', rcpt: ['b@example.test', 'c@example.test'], ip: '198.51.100.7', helo: 'mx.remote.test' });
    expect(r).toMatchObject({ action: 'reject', score: RSPAMD_REJECT, required: RSPAMD_REJECT });
    expect(r.symbols.map((s) => s.name)).toContain('GTUBE');
  });

  it('scores a rule with its points and no action below the thresholds, on a kept-alive connection', async () => {
    const first = await client.check(source(mail(TAG_SUBJECT, 'plain')), { from: '' });
    const second = await client.check(source(mail(TAG_SUBJECT, 'plain')), { from: 'a@remote.test', settingsId: '', passAll: true, queueId: '4ABCD' });
    for (const r of [first, second])
      expect(r).toEqual({
        action: 'no action',
        score: TAG_SUBJECT_POINTS,
        required: RSPAMD_REJECT,
        symbols: [{ name: 'POSTSEAL_TAG_SUBJECT', score: TAG_SUBJECT_POINTS }],
        skipped: false,
      });
  });

  it('sends an SMTPUTF8 envelope as UTF-8 bytes', async () => {
    const r = await client.check(source(mail('héllo', 'plain')), { from: 'jösé@exämple.test', rcpt: ['ü@example.test'] });
    expect(r.action).toBe('no action');
  });

  it('answers /ping, also over the unix socket', async () => {
    await expect(client.ping()).resolves.toBeUndefined();
    const viaSocket = createRspamdClient({ socket: rspamd.socket, host: 'unused', port: 1, timeoutMs: 5000 });
    try {
      await expect(viaSocket.ping()).resolves.toBeUndefined();
      expect((await viaSocket.check(source(mail('x', GTUBE)), {})).action).toBe('reject');
    } finally {
      viaSocket.close();
    }
  });
});

describe('the rspamd client with a broken rspamd', () => {
  /** An HTTP server answering /checkv2 from `answer`; it records the request headers. */
  async function withServer(answer: (res: http.ServerResponse) => void, run: (client: RspamdClient, seen: IncomingHttpHeaders[]) => Promise<void>, timeoutMs = 300) {
    const seen: IncomingHttpHeaders[] = [];
    const server = http.createServer((req, res) => {
      seen.push(req.headers);
      req.resume();
      req.on('end', () => answer(res));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const client = createRspamdClient({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, timeoutMs });
    try {
      await run(client, seen);
    } finally {
      client.close();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  }
  const json =
    (body: string, status = 200) =>
    (res: http.ServerResponse) =>
      res.writeHead(status, { 'Content-Type': 'application/json' }).end(body);

  it('passes the envelope and client as rspamd headers, one Rcpt per recipient', () =>
    withServer(json('{"score":1,"required_score":15,"action":"no action","symbols":{}}'), async (client, seen) => {
      await client.check(source(mail('a', 'b')), {
        from: 'a@remote.test',
        rcpt: ['b@example.test', 'c@example.test'],
        ip: '198.51.100.7',
        helo: 'mx.remote.test',
        hostname: 'mx.remote.test',
        queueId: '4ABCD',
        settingsId: 'inbound',
        passAll: true,
      });
      expect(seen[0]).toMatchObject({
        from: 'a@remote.test',
        rcpt: 'b@example.test, c@example.test',
        ip: '198.51.100.7',
        helo: 'mx.remote.test',
        hostname: 'mx.remote.test',
        'queue-id': '4ABCD',
        'settings-id': 'inbound',
        pass: 'all',
      });
    }));

  it.each([
    ['not JSON', 'Internal error<html>'],
    ['a JSON array', '[1,2]'],
    ['no score', '{"required_score":15,"action":"reject","symbols":{}}'],
    ['a score that is a string', '{"score":"15","required_score":15,"action":"reject","symbols":{}}'],
    ['an action rspamd does not have', '{"score":1,"required_score":15,"action":"delete everything","symbols":{}}'],
    ['symbols that are a list', '{"score":1,"required_score":15,"action":"no action","symbols":[]}'],
  ])('fails on an answer with %s', (_what, body) => withServer(json(body), (client) => failsWith(client.check(source(mail('a', 'b')), {}))));

  it('fails on an HTTP error status', () => withServer(json('{"error":"bad"}', 500), (client) => failsWith(client.check(source(mail('a', 'b')), {}))));

  it('fails within its timeout on an rspamd that never answers', () =>
    withServer(
      () => undefined,
      async (client) => {
        const started = Date.now();
        await failsWith(client.check(source(mail('a', 'b')), {}));
        expect(Date.now() - started).toBeLessThan(2000);
      },
    ));

  it('fails on an answer longer than its limit', () =>
    withServer(json(`{"score":1,"x":"${'a'.repeat(2 * 1024 * 1024)}"}`), (client) => failsWith(client.check(source(mail('a', 'b')), {}))));

  it('stops at once when its signal is aborted', () =>
    withServer(
      () => undefined,
      async (client) => {
        const ac = new AbortController();
        setTimeout(() => ac.abort(new Error('stage timed out')), 50);
        const started = Date.now();
        await failsWith(client.check(source(mail('a', 'b')), {}, ac.signal));
        expect(Date.now() - started).toBeLessThan(1000);
      },
      10000,
    ));

  it('reads is_skipped, which rspamd sets when it ran no rule', () => {
    expect(parseCheckV2('{"score":0,"required_score":15,"action":"no action","is_skipped":true,"symbols":{}}').skipped).toBe(true);
    expect(parseCheckV2('{"score":0,"required_score":15,"action":"no action","symbols":{}}').skipped).toBe(false);
  });

  it('keeps plain rule names only and a number or nothing as their score', () => {
    const r = parseCheckV2('{"score":7,"required_score":15,"action":"add header","symbols":{"R_OK":{"score":2},"bad name":{"score":1},"NO_SCORE":{},"NULL":null}}');
    expect(r.symbols).toEqual([{ name: 'R_OK', score: 2 }, { name: 'NO_SCORE' }, { name: 'NULL' }]);
  });

  it('sends again on a new connection when the kept-alive one was closed by rspamd meanwhile', async () => {
    const body = '{"score":1,"required_score":15,"action":"no action","symbols":{}}';
    const ok = `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: keep-alive\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    let connections = 0;
    // The first connection answers one request and is reset at the next (an idle close racing
    // the reuse); later connections answer every request.
    const server = net.createServer((sock) => {
      const n = ++connections;
      let requests = 0;
      let buf = '';
      sock.on('error', () => undefined);
      sock.on('data', (d) => {
        buf += d.toString('latin1');
        const end = buf.indexOf('\r\n\r\n');
        const length = Number(/content-length: (\d+)/i.exec(buf)?.[1] ?? 0);
        if (end < 0 || buf.length < end + 4 + length) return;
        buf = buf.slice(end + 4 + length);
        requests++;
        if (n === 1 && requests === 2) sock.resetAndDestroy();
        else sock.write(ok);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const client = createRspamdClient({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, timeoutMs: 2000 });
    try {
      await client.check(source(mail('a', 'b')), {});
      await expect(client.check(source(mail('a', 'b')), {})).resolves.toMatchObject({ score: 1 });
      expect(connections).toBe(2);
    } finally {
      client.close();
      await new Promise((r) => server.close(r));
    }
  });
});
