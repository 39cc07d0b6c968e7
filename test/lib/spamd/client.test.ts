/**
 * The spamd client against Debian's real spamd (test/helpers/spamd.ts: GTUBE and one Subject
 * rule), over TCP and its unix socket; malformed, slow and oversized answers from a scripted
 * server; abort.
 */
import { isPostsealError } from '../../../src/errors';
import { parseCheckReply, spamdCheck, spamdPing, type ScanSource, type SpamdOptions } from '../../../src/lib/spamd/client';
import { startRawServer } from '../../helpers/raw-server';
import { GTUBE, SPAMD_REQUIRED, TAG_SUBJECT, TAG_SUBJECT_POINTS, startSpamd, type Spamd } from '../../helpers/spamd';

function source(text: string, chunk = 7): ScanSource {
  const bytes = Buffer.from(text, 'utf8');
  return {
    size: bytes.length,
    async *open() {
      for (let i = 0; i < bytes.length; i += chunk) yield bytes.subarray(i, i + chunk);
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

describe('the spamd client with a real spamd', () => {
  let spamd: Spamd;
  let opts: SpamdOptions;
  beforeAll(async () => {
    spamd = await startSpamd();
    opts = { host: spamd.host, port: spamd.port, timeoutMs: 10000, command: 'REPORT' };
  }, 30000);
  afterAll(() => spamd?.stop());

  it('scores GTUBE as spam with each rule and its points from REPORT', async () => {
    const r = await spamdCheck(opts, source(mail(`hi ${TAG_SUBJECT}`, GTUBE)));
    expect(r).toEqual({
      isSpam: true,
      score: 1000 + TAG_SUBJECT_POINTS,
      required: SPAMD_REQUIRED,
      symbols: expect.arrayContaining([
        { name: 'GTUBE', score: 1000 },
        { name: 'POSTSEAL_TAG_SUBJECT', score: TAG_SUBJECT_POINTS },
      ]),
    });
    expect(r.symbols).toHaveLength(2);
  });

  it('lists the rule names alone with SYMBOLS', async () => {
    const r = await spamdCheck({ ...opts, command: 'SYMBOLS', user: 'postseal' }, source(mail(TAG_SUBJECT, 'plain')));
    expect(r).toEqual({ isSpam: false, score: TAG_SUBJECT_POINTS, required: SPAMD_REQUIRED, symbols: [{ name: 'POSTSEAL_TAG_SUBJECT' }] });
  });

  it('scores a plain message 0 with no rule, over the unix socket', async () => {
    const r = await spamdCheck({ ...opts, socket: spamd.socket, port: 1 }, source(mail('hello', 'plain text')));
    expect(r).toEqual({ isSpam: false, score: 0, required: SPAMD_REQUIRED, symbols: [] });
  });

  it('sends 8-bit bytes as they are, split anywhere, with the right Content-length', async () => {
    const r = await spamdCheck(opts, source(mail('Grüße', `${'ä'.repeat(5000)}\r\n${GTUBE}`), 3));
    expect(r.isSpam).toBe(true);
  });

  it('answers PING', async () => {
    await expect(spamdPing(spamd, 2000)).resolves.toBeUndefined();
  });

  it('fails when the announced size is not what the message holds', async () => {
    const s = source(mail('x', 'y'));
    await failsWith(spamdCheck({ ...opts, timeoutMs: 2000 }, { ...s, size: s.size + 10 }));
  });
});

describe('the spamd client with a broken spamd', () => {
  const opts = (port: number): SpamdOptions => ({ host: '127.0.0.1', port, timeoutMs: 300, command: 'SYMBOLS' });
  const withServer = async (answer: Parameters<typeof startRawServer>[0], run: (port: number) => Promise<void>) => {
    const srv = await startRawServer(answer);
    try {
      await run(srv.port);
    } finally {
      await srv.close();
    }
  };
  const whole = (r: Buffer) => r.includes('\r\n\r\n') && r.toString().endsWith('\r\n');

  it('fails on an answer that is not SPAMD', () =>
    withServer(
      (r) => (whole(r) ? { data: 'HTTP/1.1 200 OK\r\n\r\n' } : null),
      (port) => failsWith(spamdCheck(opts(port), source(mail('a', 'b')))),
    ));

  it('fails on an error code from spamd', () =>
    withServer(
      (r) => (whole(r) ? { data: 'SPAMD/1.0 76 Bad header line: x\r\n' } : null),
      (port) => failsWith(spamdCheck(opts(port), source(mail('a', 'b')))),
    ));

  it('fails on a Spam header it cannot read', () =>
    withServer(
      (r) => (whole(r) ? { data: 'SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: maybe ; lots / 5.0\r\n\r\n' } : null),
      (port) => failsWith(spamdCheck(opts(port), source(mail('a', 'b')))),
    ));

  it('fails on a body shorter than its Content-length (a cut answer)', () =>
    withServer(
      (r) => (whole(r) ? { data: 'SPAMD/1.1 0 EX_OK\r\nContent-length: 40\r\nSpam: True ; 9.0 / 5.0\r\n\r\nGTUBE' } : null),
      (port) => failsWith(spamdCheck(opts(port), source(mail('a', 'b')))),
    ));

  it('fails within its timeout on a spamd that never answers', () =>
    withServer(
      () => null,
      async (port) => {
        const started = Date.now();
        await failsWith(spamdCheck(opts(port), source(mail('a', 'b'))));
        expect(Date.now() - started).toBeLessThan(2000);
      },
    ));

  it('fails within its timeout on a spamd that answers and does not close', () =>
    withServer(
      (r) => (whole(r) ? { data: 'SPAMD/1.1 0 EX_OK\r\nContent-length: 5\r\nSpam: True ; 9.0 / 5.0\r\n\r\nGTUBE', end: false } : null),
      (port) => failsWith(spamdCheck(opts(port), source(mail('a', 'b')))),
    ));

  it('fails on an answer longer than maxReplyBytes', () =>
    withServer(
      (r) => (whole(r) ? { data: `SPAMD/1.1 0 EX_OK\r\nContent-length: 100000\r\nSpam: True ; 9.0 / 5.0\r\n\r\n${'A,'.repeat(50000)}` } : null),
      (port) => failsWith(spamdCheck({ ...opts(port), maxReplyBytes: 10000 }, source(mail('a', 'b')))),
    ));

  it('fails when nothing listens', async () => {
    const srv = await startRawServer(() => null);
    await srv.close();
    await failsWith(spamdCheck(opts(srv.port), source(mail('a', 'b'))));
  });

  it('stops at once when its signal is aborted', () =>
    withServer(
      () => null,
      async (port) => {
        const ac = new AbortController();
        const started = Date.now();
        setTimeout(() => ac.abort(new Error('stage timed out')), 50);
        await failsWith(spamdCheck({ ...opts(port), timeoutMs: 10000 }, source(mail('a', 'b')), ac.signal));
        expect(Date.now() - started).toBeLessThan(1000);
      },
    ));

  it('drops rule names that are not rule names, and never lists more than 200', () => {
    const names = ['GOOD_ONE', 'bad name', '<script>', ...Array.from({ length: 300 }, (_, i) => `R${i}`)].join(',');
    const reply = Buffer.from(`SPAMD/1.1 0 EX_OK\r\nContent-length: ${names.length}\r\nSpam: True ; 9.0 / 5.0\r\n\r\n${names}`);
    const r = parseCheckReply(reply, 'SYMBOLS');
    expect(r.symbols[0]).toEqual({ name: 'GOOD_ONE' });
    expect(r.symbols.map((s) => s.name)).not.toContain('<script>');
    expect(r.symbols).toHaveLength(200);
  });
});
