/**
 * The spam and spam-tag stages through postseal over real sockets (listener, pipeline,
 * verdict, reinjection to a sink), scored by Debian's real spamd and rspamd, one of each for
 * the file (test/helpers/spamd.ts, rspamd.ts: GTUBE, and TAG_SUBJECT worth 3.5 points).
 * One bank per situation; the levels are amavisd's defaults unless a bank says otherwise.
 */
import net, { type AddressInfo } from 'node:net';
import { startHarness, type Harness } from '../../helpers/postseal';
import { SKIP_SUBJECT, SOFT_REJECT_SUBJECT, startRspamd, type Rspamd } from '../../helpers/rspamd';
import { startSink, type Sink } from '../../helpers/sink';
import { TestClient } from '../../helpers/smtp-client';
import { startRawServer } from '../../helpers/raw-server';
import { freePort } from '../../helpers/redis-server';
import { waitFor } from '../../e2e/wait';
import { GTUBE, TAG_SUBJECT, startSpamd, type Spamd } from '../../helpers/spamd';

const STAGES = ['header-sanity', 'spam', 'spam-tag'];

let spamd: Spamd;
let rspamd: Rspamd;
let sink: Sink;
let h: Harness;
let silent: Awaited<ReturnType<typeof startRawServer>>;
let garbage: Awaited<ReturnType<typeof startRawServer>>;
let trickle: { port: number; open: Set<net.Socket>; close(): Promise<void> };

/** A spamd that starts an answer and then sends one byte every 100 ms, never finishing. */
async function startTrickle(): Promise<typeof trickle> {
  const open = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (sock) => {
    open.add(sock);
    sock.on('error', () => undefined);
    sock.on('close', () => {
      open.delete(sock);
      clearInterval(timer);
    });
    sock.write('SPAMD/1.1 0 EX_OK\r\n');
    // Writing is how the server learns that the client has gone: the next write is reset.
    const timer = setInterval(() => sock.write('X'), 100);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    open,
    close: () =>
      new Promise<void>((r) => {
        for (const s of open) s.destroy();
        server.close(() => r());
      }),
  };
}

beforeAll(async () => {
  [spamd, rspamd, sink] = await Promise.all([startSpamd(), startRspamd(), startSink()]);
  // A spamd that never answers, and one that answers with something that is not SPAMD.
  silent = await startRawServer(() => null);
  trickle = await startTrickle();
  garbage = await startRawServer((r) => (r.includes('\r\n\r\n') ? { data: 'HTTP/1.0 400 Bad Request\r\n\r\n' } : null));
  const closed = await freePort();
  const sa = { enabled: true, host: spamd.host, port: spamd.port, timeoutMs: 5000 };
  const rs = { enabled: true, host: rspamd.host, port: rspamd.port, timeoutMs: 5000 };
  const bank = (spam: Record<string, unknown>) => ({ stages: STAGES, spam: { spamd: sa, subjectTag: '***SPAM*** ', ...spam } });
  h = await startHarness({
    forwardPort: sink.port,
    banks: {
      default: bank({}),
      TAGONLY: bank({ killLevel: 2000 }),
      LOVERS: bank({ lovers: ['anna@example.net'] }),
      SMALL: bank({ maxScanBytes: 1024 }),
      BYPASS: bank({ bypass: ['example.net'], spamd: { ...sa, port: closed } }),
      DOWN: bank({ spamd: { ...sa, port: closed } }),
      DOWNPASS: bank({ spamd: { ...sa, port: closed }, onScannerFailure: 'pass' }),
      RSPAMD: bank({ spamd: { enabled: false }, rspamd: rs, killLevel: 2000 }),
      RSPAMDSMALL: bank({ spamd: { enabled: false }, rspamd: rs, maxScanBytes: 1024 }),
      RSPAMDSCORE: bank({ spamd: { enabled: false }, rspamd: { ...rs, honourAction: false }, killLevel: 2000 }),
      BOTH: bank({ rspamd: rs }),
      DISCARD: bank({ destiny: 'discard' }),
      SLOW: bank({ spamd: { ...sa, port: silent.port, timeoutMs: 300 } }),
      GARBAGE: bank({ spamd: { ...sa, port: garbage.port } }),
      DEADLINE: { ...bank({ spamd: { ...sa, port: trickle.port, timeoutMs: 8000 } }), timeouts: { messageDeadlineMs: 1000, stageTimeoutMs: 9000 } },
    },
    listeners: [
      'default',
      'TAGONLY',
      'LOVERS',
      'SMALL',
      'BYPASS',
      'DOWN',
      'DOWNPASS',
      'RSPAMD',
      'RSPAMDSMALL',
      'RSPAMDSCORE',
      'BOTH',
      'DISCARD',
      'SLOW',
      'GARBAGE',
      'DEADLINE',
    ].map((bank) => ({
      bank,
    })),
  });
}, 60000);

afterAll(async () => {
  await h?.close();
  await Promise.all([spamd?.stop(), rspamd?.stop(), sink?.close(), silent?.close(), garbage?.close(), trickle?.close()]);
});

const message = (subject: string, body: string, extra = '') => `${extra}From: sender@remote.test\r\nTo: anna@example.net\r\nSubject: ${subject}\r\n\r\n${body}\r\n`;

async function send(bank: string, data: string) {
  const before = sink.received.length;
  const c = await TestClient.connect(h.app.portOf(bank));
  const r = await c.send({ from: 'sender@remote.test', to: ['anna@example.net'], data });
  await c.quit();
  const log = h.logs.filter((l) => l.msg === 'message').pop()!;
  const got = sink.received.length > before ? sink.received[sink.received.length - 1].data.toString('latin1') : undefined;
  return { reply: r.final!, got, head: got?.slice(0, got.indexOf('\r\n\r\n') + 2), findings: log.findings as string[] };
}

describe('the spam stages with spamd', () => {
  it('tags a message between tagLevel and tag2Level with X-Spam-Flag: NO and the score, and leaves the Subject alone', async () => {
    const { reply, head, findings } = await send('default', message(`hello ${TAG_SUBJECT}`, 'plain'));
    expect(reply.code).toBe(250);
    expect(head).toMatch(
      /^X-Spam-Flag: NO\r\nX-Spam-Score: 3\.5\r\nX-Spam-Level: \*\*\*\r\nX-Spam-Status: No, score=3\.5 tagged_above=2 required=6\.31\r\n tests=\[POSTSEAL_TAG_SUBJECT=3\.5\]\r\n/,
    );
    expect(head).toContain(`\r\nSubject: hello ${TAG_SUBJECT}\r\n`);
    expect(findings).toContainEqual(expect.stringMatching(/^SPAM_TAGGED\(score=3\.5 tests=\[POSTSEAL_TAG_SUBJECT=3\.5\] spamd=3\.5\/5\)$/));
  });

  it('adds nothing to a message below tagLevel', async () => {
    const { reply, head, findings } = await send('default', message('hello', 'plain'));
    expect(reply.code).toBe(250);
    expect(head).not.toMatch(/^X-Spam-/im);
    expect(findings).toContainEqual(expect.stringMatching(/^SPAM_CLEAN\(score=0 /));
  });

  it('rejects GTUBE above killLevel with 554 5.7.0', async () => {
    const { reply, got, findings } = await send('default', message('offer', GTUBE));
    expect(`${reply.code} ${reply.text}`).toMatch(/^554 5\.7\.0 Message rejected as spam/);
    expect(got).toBeUndefined();
    expect(findings).toContainEqual(expect.stringMatching(/^SPAM_KILL\(score=1000 tests=\[GTUBE=1000\]/));
  });

  it('tags GTUBE above tag2Level with X-Spam-Flag: YES and the Subject tag when killLevel is higher', async () => {
    const { reply, head, findings } = await send('TAGONLY', message('offer', GTUBE));
    expect(reply.code).toBe(250);
    expect(head).toMatch(
      /^X-Spam-Flag: YES\r\nX-Spam-Score: 1000\r\nX-Spam-Level: \*{64}\r\nX-Spam-Status: Yes, score=1000 tagged_above=2 required=6\.31 tests=\[GTUBE=1000\]\r\n/,
    );
    expect(head).toContain('\r\nSubject: ***SPAM*** offer\r\n');
    expect(findings).toContain('SPAM_TAG_SUBJECT("***SPAM*** " put before the Subject)');
  });

  it('delivers GTUBE above killLevel to a spam lover, tagged as spam, not rejected', async () => {
    const { reply, head, findings } = await send('LOVERS', message('offer', GTUBE));
    expect(reply.code).toBe(250);
    expect(head).toMatch(/^X-Spam-Flag: YES\r\n/);
    expect(head).toContain('\r\nSubject: ***SPAM*** offer\r\n');
    expect(findings).toContainEqual(expect.stringMatching(/^SPAM_KILL_LOVED\(/));
  });

  it('discards GTUBE above killLevel with destiny discard (250, not delivered)', async () => {
    const { reply, got } = await send('DISCARD', message('offer', GTUBE));
    expect(reply.code).toBe(250);
    expect(got).toBeUndefined();
  });

  it('removes the X-Spam-* fields a sender wrote, with a finding, before adding its own', async () => {
    const forged = 'X-Spam-Flag: NO\r\nX-Spam-Status: No, score=-100 whitelisted\r\nX-Spam-Whatever: x\r\n';
    const { reply, head, findings } = await send('TAGONLY', message('offer', GTUBE, forged));
    expect(reply.code).toBe(250);
    expect(head).not.toMatch(/X-Spam-Flag: NO|score=-100|X-Spam-Whatever/);
    expect(head?.match(/^X-Spam-Flag:/gm)).toHaveLength(1);
    expect(findings).toContain('SPAM_TAG_HEADERS_REMOVED(X-Spam-Flag,X-Spam-Status,X-Spam-Whatever)');
  });

  it('scans a message over maxScanBytes as its header and its body cut there, so padding does not hide spam, and says so', async () => {
    const padded = message('offer', `${GTUBE}\r\n${`${'x'.repeat(76)}\r\n`.repeat(2700)}`);
    expect(padded.length).toBeGreaterThan(201 * 1024);
    const { reply, got, findings } = await send('SMALL', padded);
    expect(`${reply.code} ${reply.text}`).toMatch(/^554 5\.7\.0 Message rejected as spam/);
    expect(got).toBeUndefined();
    expect(findings).toContainEqual(expect.stringMatching(/^SPAM_TRUNCATED\(\d+ bytes; scanned the header and the first \d+ of \d+ body bytes \(maxScanBytes 1024\)\)$/));
    expect(findings).toContainEqual(expect.stringMatching(/^SPAM_KILL\(score=1000 /));
  });

  it('does no work when every recipient is in bypass', async () => {
    const { reply, findings } = await send('BYPASS', message('offer', GTUBE));
    expect(reply.code).toBe(250);
    expect(findings).toContain('SPAM_BYPASSED');
  });

  it('tempfails with 451 4.3.0 when spamd is down', async () => {
    const { reply, got, findings } = await send('DOWN', message('offer', GTUBE));
    expect(`${reply.code} ${reply.text}`).toMatch(/^451 4\.3\.0 Spam check could not complete/);
    expect(got).toBeUndefined();
    expect(findings).toContainEqual(expect.stringMatching(/^SPAM_SCANNER_FAILED\(spamd: 127\.0\.0\.1:\d+: ECONNREFUSED\)$/));
  });

  it('tempfails when spamd does not answer within its timeoutMs', async () => {
    const started = Date.now();
    const { reply, findings } = await send('SLOW', message('offer', GTUBE));
    expect(`${reply.code} ${reply.text}`).toMatch(/^451 4\.3\.0 Spam check could not complete/);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(findings).toContainEqual(expect.stringMatching(/^SPAM_SCANNER_FAILED\(spamd: no complete answer from 127\.0\.0\.1:\d+ within 300 ms\)$/));
  });

  it('closes the connection to spamd when the message deadline ends the stage', async () => {
    const { reply } = await send('DEADLINE', message('offer', GTUBE));
    expect(`${reply.code} ${reply.text}`).toMatch(/^451 4\.4\.7 /);
    await waitFor('the connection to the trickling spamd to close', () => trickle.open.size === 0, { timeoutMs: 2000 });
  });

  it('tempfails when spamd answers garbage', async () => {
    const { reply, findings } = await send('GARBAGE', message('offer', GTUBE));
    expect(`${reply.code} ${reply.text}`).toMatch(/^451 4\.3\.0 Spam check could not complete/);
    expect(findings).toContainEqual(expect.stringMatching(/^SPAM_SCANNER_FAILED\(spamd: not a SPAMD answer/));
  });

  it('delivers unscanned, with the failure as a finding, when onScannerFailure is pass', async () => {
    const { reply, got, findings } = await send('DOWNPASS', message('offer', GTUBE));
    expect(reply.code).toBe(250);
    expect(got).toBeDefined();
    expect(findings).toContainEqual(expect.stringMatching(/^SPAM_SCANNER_FAILED\(/));
  });
});

describe('the spam stages with rspamd', () => {
  it("rejects GTUBE by rspamd's reject action even below killLevel, with honourAction", async () => {
    const { reply, findings } = await send('RSPAMD', message('offer', GTUBE));
    expect(`${reply.code} ${reply.text}`).toMatch(/^554 5\.7\.0 /);
    expect(findings).toContainEqual(expect.stringMatching(/^SPAM_KILL\(score=15 tests=\[GTUBE=0\] rspamd=15\/15\/reject\)$/));
  });

  it('gives rspamd the same cut copy of a message over maxScanBytes', async () => {
    const { reply, findings } = await send('RSPAMDSMALL', message('offer', `${GTUBE}\r\n${`${'x'.repeat(76)}\r\n`.repeat(2700)}`));
    expect(`${reply.code} ${reply.text}`).toMatch(/^554 5\.7\.0 /);
    expect(findings).toContainEqual(expect.stringMatching(/^SPAM_TRUNCATED\(/));
  });

  it("tempfails with 451 4.7.1 on rspamd's soft reject (its ratelimit or greylisting), so Postfix retries", async () => {
    const { reply, got, findings } = await send('RSPAMD', message(`hi ${SOFT_REJECT_SUBJECT}`, 'plain'));
    expect(`${reply.code} ${reply.text}`).toMatch(/^451 4\.7\.1 /);
    expect(got).toBeUndefined();
    expect(findings).toContainEqual(expect.stringMatching(/^SPAM_SOFT_REJECT\(rspamd=.*\/soft_reject\)$/));
  });

  it('does not count an answer for which rspamd ran no rule and set no action as a clean score, and says so', async () => {
    const { reply, findings } = await send('RSPAMD', message(`hi ${SKIP_SUBJECT} ${TAG_SUBJECT}`, 'plain'));
    expect(reply.code).toBe(250);
    expect(findings).toContainEqual(expect.stringMatching(/^SPAM_SCANNER_SKIPPED\(rspamd=skipped/));
    expect(findings.filter((f) => /^SPAM_(CLEAN|TAGGED|SPAMMY|KILL)/.test(f))).toEqual([]);
  });

  it("tags GTUBE by rspamd's score alone without honourAction", async () => {
    const { reply, head } = await send('RSPAMDSCORE', message('offer', GTUBE));
    expect(reply.code).toBe(250);
    expect(head).toMatch(/^X-Spam-Flag: YES\r\nX-Spam-Score: 15\r\n/);
  });

  it('takes the higher score of spamd and rspamd and lists the rules of both', async () => {
    const { reply, findings } = await send('BOTH', message(`hi ${TAG_SUBJECT}`, 'plain'));
    expect(reply.code).toBe(250);
    expect(findings).toContainEqual(
      expect.stringMatching(/^SPAM_TAGGED\(score=3\.5 tests=\[POSTSEAL_TAG_SUBJECT=3\.5,POSTSEAL_TAG_SUBJECT=3\.5\] spamd=3\.5\/5 rspamd=3\.5\/15\/no_action\)$/),
    );
    const gtube = await send('BOTH', message('offer', GTUBE));
    expect(gtube.findings).toContainEqual(expect.stringMatching(/^SPAM_KILL\(score=1000 tests=\[GTUBE=1000,GTUBE=0\] spamd=1000\/5 rspamd=15\/15\/reject\)$/));
  });
});
