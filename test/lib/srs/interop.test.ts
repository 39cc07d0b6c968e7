/**
 * postseal's SRS against the implementations already in service: Mail::SRS (Debian
 * libmail-srs-perl, with an injected clock) and postsrsd 1.10 (Debian, the libsrs2 C code, real
 * clock, over tcp_table). Same secret, same settings: the same addresses, each reversing the other's.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readSrsSecrets } from '../../../src/lib/srs/secrets';
import { createSrsEngine, type SrsSettings } from '../../../src/lib/srs/srs';
import { mailSrs, startPostsrsd, tcpDecode, tcpTableGet, type Postsrsd } from '../../helpers/srs-peers';

const DAY_S = 86_400;
/** Noon of a day, in seconds: a clock for both sides. */
const T0 = Math.floor(Date.UTC(2026, 11, 7, 12) / 1000);
const SECRET = 'interop-secret-0123';
const DOMAIN = 'fwd.example';

function ours(timeS: number, over: Partial<SrsSettings> = {}) {
  return createSrsEngine({
    domain: DOMAIN,
    secrets: [SECRET],
    hashLength: 4,
    hashMin: 4,
    maxAgeDays: 21,
    separator: '=',
    localDomains: [],
    excludeDomains: [],
    now: () => timeS * 1000,
    ...over,
  });
}

function fwd(e: ReturnType<typeof ours>, a: string): string {
  const r = e.forward(a);
  if (r.kind !== 'rewritten') throw new Error(`${a}: ${r.kind} ${r.reason}`);
  return r.address;
}

const SENDERS = [
  'alice@orig.example',
  'Bob.Smith+tag@Mixed.Case.Example',
  'a=b-c+d@orig.example',
  'SRS0=AbCd=XY=orig.example=carol@other.example',
  'SRS0+xyZ1=AB=orig.example=carol@other.example',
  'SRS1=wxyz=first.example==AbCd=XY=orig.example=dave@second.example',
];

describe('SRS interop with Mail::SRS', () => {
  it('makes the same addresses as Mail::SRS with the same secret and clock', async () => {
    const theirs = await mailSrs(
      { secrets: [SECRET], time: T0 },
      SENDERS.map((s) => `forward ${s} ${DOMAIN}`),
    );
    expect(theirs).toEqual(SENDERS.map((s) => `OK ${fwd(ours(T0), s)}`));
  });

  it("reverses Mail::SRS's SRS0 and SRS1 addresses, and Mail::SRS reverses ours", async () => {
    const made = await mailSrs(
      { secrets: [SECRET], time: T0 },
      SENDERS.map((s) => `forward ${s} ${DOMAIN}`),
    );
    const e = ours(T0);
    const ourReverse = made.map((l) => e.reverse(l.slice(3)));
    const theirReverse = await mailSrs(
      { secrets: [SECRET], time: T0 },
      SENDERS.map((s) => `reverse ${fwd(e, s)}`),
    );
    expect(ourReverse.map((r) => (r.kind === 'rewritten' ? `OK ${r.address}` : r.kind))).toEqual(theirReverse);
    // Each side gets back what was forwarded (an SRS0 becomes itself; an SRS1 points at its first forwarder).
    expect(theirReverse[0]).toBe('OK alice@orig.example');
    expect(theirReverse[3]).toBe(`OK ${SENDERS[3]}`);
    expect(theirReverse[5]).toBe('OK SRS0=AbCd=XY=orig.example=dave@first.example');
  });

  it('agrees with Mail::SRS across the timestamp boundary: valid on day 21, refused on day 22', async () => {
    const srs = fwd(ours(T0), 'alice@orig.example');
    const theirSrs = (await mailSrs({ secrets: [SECRET], time: T0 }, [`forward alice@orig.example ${DOMAIN}`]))[0]!.slice(3);
    for (const [days, ok] of [
      [0, true],
      [21, true],
      [22, false],
      [-1, false],
    ] as const) {
      const at = T0 + days * DAY_S;
      const [theirs] = await mailSrs({ secrets: [SECRET], time: at }, [`reverse ${srs}`]);
      expect(theirs!.startsWith('OK')).toBe(ok);
      expect(ours(at).reverse(theirSrs).kind === 'rewritten').toBe(ok);
    }
  });

  it('agrees on the day the two-letter timestamp wraps around (day 1023 to day 0 of the cycle)', async () => {
    const lastOfCycle = (Math.ceil(T0 / DAY_S / 1024) * 1024 - 1) * DAY_S + 3600;
    const [made] = await mailSrs({ secrets: [SECRET], time: lastOfCycle }, [`forward alice@orig.example ${DOMAIN}`]);
    expect(made).toBe(`OK ${fwd(ours(lastOfCycle), 'alice@orig.example')}`);
    expect(made).toContain('=77=');
    expect(ours(lastOfCycle + 2 * DAY_S).reverse(made!.slice(3)).kind).toBe('rewritten');
  });

  it("reverses each other's addresses after a mail system upper- or lower-cased them", async () => {
    const srs0 = fwd(ours(T0), 'Alice@Orig.example');
    const srs1 = fwd(ours(T0), SENDERS[3]!);
    const variants = [srs0.toUpperCase(), srs0.toLowerCase(), srs1.toUpperCase(), srs1.toLowerCase()];
    const theirs = await mailSrs(
      { secrets: [SECRET], time: T0 },
      variants.map((v) => `reverse ${v}`),
    );
    expect(theirs.every((l) => l.startsWith('OK '))).toBe(true);
    const made = await mailSrs({ secrets: [SECRET], time: T0 }, [`forward Alice@Orig.example ${DOMAIN}`]);
    for (const v of [made[0]!.slice(3).toUpperCase(), made[0]!.slice(3).toLowerCase()]) expect(ours(T0).reverse(v).kind).toBe('rewritten');
  });

  it('verifies with the second secret as Mail::SRS does (rotation), and signs with the first', async () => {
    const old = fwd(ours(T0, { secrets: ['old-secret-abcdef'] }), 'alice@orig.example');
    const [theirs] = await mailSrs({ secrets: ['new-secret-abcdef', 'old-secret-abcdef'], time: T0 }, [`reverse ${old}`]);
    expect(theirs).toBe('OK alice@orig.example');
    const [made] = await mailSrs({ secrets: ['new-secret-abcdef', 'old-secret-abcdef'], time: T0 }, [`forward alice@orig.example ${DOMAIN}`]);
    expect(made).toBe(`OK ${fwd(ours(T0, { secrets: ['new-secret-abcdef', 'old-secret-abcdef'] }), 'alice@orig.example')}`);
  });

  it('matches Mail::SRS with the "+" separator and an 8-character hash', async () => {
    const opts = { secrets: [SECRET], time: T0, separator: '+', hashLength: 8 };
    const theirs = await mailSrs(
      opts,
      SENDERS.map((s) => `forward ${s} ${DOMAIN}`),
    );
    expect(theirs).toEqual(SENDERS.map((s) => `OK ${fwd(ours(T0, { separator: '+', hashLength: 8, hashMin: 8 }), s)}`));
  });

  it('refuses what Mail::SRS refuses: a forged hash', async () => {
    const forged = fwd(ours(T0), 'alice@orig.example').replace('alice', 'mallory');
    const [theirs] = await mailSrs({ secrets: [SECRET], time: T0 }, [`reverse ${forged}`]);
    expect(theirs).toMatch(/^ERR .*Invalid hash/);
    expect(ours(T0).reverse(forged)).toEqual({ kind: 'invalid', reason: 'bad-hash' });
  });
});

describe('SRS interop with postsrsd 1.10 (tcp_table)', () => {
  let postsrsd: Postsrsd;
  beforeAll(async () => {
    postsrsd = await startPostsrsd({ domain: DOMAIN, secrets: [SECRET] });
  });
  afterAll(async () => await postsrsd?.stop());

  const VECTORS = [...SENDERS, 'with space@orig.example', 'MiXeD@Orig.Example'];
  /**
   * postsrsd answers a local part with a space unquoted (SRS0=...=with space@fwd.example), a form
   * Postfix would split; we quote it whole. Same hash (of the local part itself), same address.
   */
  const internal = (a: string) => a.replace(/^"(.*)"@/, (_, l: string) => `${l.replace(/\\(.)/g, '$1')}@`);

  it('makes the same addresses as postsrsd for a table of senders', async () => {
    const now = Math.floor(Date.now() / 1000);
    const replies = await tcpTableGet(postsrsd.forwardPort, VECTORS);
    expect(replies.map((r) => [r.slice(0, 4), tcpDecode(r.slice(4))])).toEqual(VECTORS.map((v) => ['200 ', internal(fwd(ours(now), v))]));
  });

  it('verifies what postsrsd signs with the first of several secrets, and postsrsd what we sign with the second', async () => {
    const rotated = await startPostsrsd({ domain: DOMAIN, secrets: ['new-secret-abcdef', SECRET, 'oldest-secret-xyz'] });
    try {
      const now = Math.floor(Date.now() / 1000);
      const [made] = await tcpTableGet(rotated.forwardPort, ['alice@orig.example']);
      const both = ours(now, { secrets: ['new-secret-abcdef', SECRET, 'oldest-secret-xyz'] });
      expect(tcpDecode(made!.slice(4))).toBe(fwd(both, 'alice@orig.example'));
      expect(ours(now, { secrets: ['other-secret-1234', 'new-secret-abcdef'] }).reverse(tcpDecode(made!.slice(4)))).toEqual({ kind: 'rewritten', address: 'alice@orig.example' });
      const oldest = fwd(ours(now, { secrets: ['oldest-secret-xyz'] }), 'bob@orig.example');
      expect(await tcpTableGet(rotated.reversePort, [oldest])).toEqual(['200 bob@orig.example']);
    } finally {
      await rotated.stop();
    }
  });

  it("reverses postsrsd's addresses, and postsrsd reverses ours, also case-smashed", async () => {
    const now = Math.floor(Date.now() / 1000);
    const theirs = (await tcpTableGet(postsrsd.forwardPort, VECTORS)).map((r) => tcpDecode(r.slice(4)));
    for (const [i, a] of theirs.entries()) {
      const back = ours(now).reverse(a);
      // An SRS1 reverses to the SRS0 address at the first forwarder; anything else to itself.
      const expected = VECTORS[i]!.startsWith('SRS1') ? 'SRS0=AbCd=XY=orig.example=dave@first.example' : VECTORS[i];
      expect(back.kind === 'rewritten' && internal(back.address)).toBe(expected);
    }
    const mine = VECTORS.map((v) => internal(fwd(ours(now), v)));
    const smashed = [...mine, ...mine.map((m) => m.toUpperCase()), ...mine.map((m) => m.toLowerCase())];
    const replies = await tcpTableGet(postsrsd.reversePort, smashed);
    expect(replies.map((r) => r.slice(0, 3))).toEqual(smashed.map(() => '200'));
    expect(tcpDecode(replies[0]!.slice(4))).toBe(VECTORS[0]);
    const ourBack = smashed.map((s) => {
      const r = ours(now).reverse(s);
      return r.kind === 'rewritten' ? internal(r.address).toLowerCase() : r.kind;
    });
    expect(replies.map((r) => tcpDecode(r.slice(4)).toLowerCase())).toEqual(ourBack);
  });

  it('reverses what postsrsd signed with a secrets line that has blanks at its ends, read from the same file', async () => {
    const line = '  interop secret with blanks ';
    const spaced = await startPostsrsd({ domain: DOMAIN, secrets: [line] });
    try {
      const [made] = await tcpTableGet(spaced.forwardPort, ['alice@orig.example']);
      const f = path.join(mkdtempSync(path.join(tmpdir(), 'srs-interop-')), 'secrets');
      writeFileSync(f, `${line}\n`, { mode: 0o600 });
      const e = ours(Math.floor(Date.now() / 1000), { secrets: readSrsSecrets(f) });
      expect(e.reverse(tcpDecode(made!.slice(4)))).toEqual({ kind: 'rewritten', address: 'alice@orig.example' });
    } finally {
      await spaced.stop();
    }
  });

  it('refuses a forged address as postsrsd does', async () => {
    const forged = fwd(ours(Math.floor(Date.now() / 1000)), 'alice@orig.example').replace('alice', 'mallory');
    const [reply] = await tcpTableGet(postsrsd.reversePort, [forged]);
    expect(reply).toMatch(/^500 /);
    expect(ours(Math.floor(Date.now() / 1000)).reverse(forged).kind).toBe('invalid');
  });
});
