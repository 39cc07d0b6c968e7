import { createHmac } from 'node:crypto';
import { createSrsEngine, type SrsSettings } from '../../../src/lib/srs/srs';

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 11, 7, 12);

function engine(over: Partial<SrsSettings> = {}, now = T0) {
  return createSrsEngine({
    domain: 'fwd.example',
    secrets: ['first-secret-value'],
    hashLength: 4,
    hashMin: 4,
    maxAgeDays: 21,
    separator: '=',
    localDomains: ['local.example', '.corp.example'],
    excludeDomains: ['excluded.example'],
    now: () => now,
    ...over,
  });
}

function rewritten(r: ReturnType<ReturnType<typeof engine>['forward']>): string {
  if (r.kind !== 'rewritten') throw new Error(`expected a rewrite, got ${r.kind} (${r.reason})`);
  return r.address;
}

describe('SRS engine', () => {
  it.each(['admin@[10.0.0.5]', 'root@localhost', 'root@mail.localhost', 'user@intranet', 'u@192.168.1.1'])(
    'leaves %s alone: no outside domain, so no signed address that would reverse into our own network',
    (sender) => {
      expect(engine().forward(sender)).toEqual({ kind: 'unchanged', reason: 'not-a-public-domain' });
    },
  );

  it('refuses to reverse a correctly signed SRS0 whose host is an address literal (a key from an older postseal or another signer)', () => {
    // What Mail::SRS would make for admin@[10.0.0.5]: the hash is right, the host must still be refused.
    const { createHmac } = require('node:crypto') as typeof import('node:crypto');
    const e = engine();
    const tt = /^SRS0=[^=]+=([A-Z2-7]{2})=/.exec(rewritten(e.forward('a@orig.example')))![1];
    const h = createHmac('sha1', 'first-secret-value').update(`${tt.toLowerCase()}[10.0.0.5]admin`).digest('base64').slice(0, 4);
    expect(e.reverse(`SRS0=${h}=${tt}=[10.0.0.5]=admin@fwd.example`)).toEqual({ kind: 'invalid', reason: 'not-a-public-domain' });
  });

  it('forwards an outside sender to an SRS0 address of our domain that reverses to it', () => {
    const e = engine();
    const srs = rewritten(e.forward('alice@orig.example'));
    expect(srs).toMatch(/^SRS0=[A-Za-z0-9+/]{4}=[A-Z2-7]{2}=orig\.example=alice@fwd\.example$/);
    expect(e.reverse(srs)).toEqual({ kind: 'rewritten', address: 'alice@orig.example' });
  });

  it.each([
    ['', 'null-sender'],
    ['<>', 'null-sender'],
    ['postmaster', 'no-domain'],
    ['bob@local.example', 'local-domain'],
    ['bob@LOCAL.example', 'local-domain'],
    ['bob@mx.corp.example', 'local-domain'],
    ['bob@excluded.example', 'excluded-domain'],
    ['SRS0=abcd=AB=x.example=bob@fwd.example', 'our-domain'],
  ])('leaves the sender %j alone (%s)', (sender, reason) => {
    expect(engine().forward(sender)).toEqual({ kind: 'unchanged', reason });
  });

  it('does not treat corp.example itself as a subdomain match of ".corp.example"', () => {
    expect(engine().forward('bob@corp.example').kind).toBe('rewritten');
  });

  it("turns another forwarder's SRS0 address into SRS1 keeping its separator, and reverses it back", () => {
    const e = engine();
    const theirs = 'SRS0+xYz1=AB=orig.example=alice@other.example';
    const srs1 = rewritten(e.forward(theirs));
    expect(srs1).toMatch(/^SRS1=[A-Za-z0-9+/]{4}=other\.example=\+xYz1=AB=orig\.example=alice@fwd\.example$/);
    expect(e.reverse(srs1)).toEqual({ kind: 'rewritten', address: theirs });
  });

  it("re-signs another forwarder's SRS1 address, still pointing at the first forwarder", () => {
    const e = engine();
    const srs1 = rewritten(e.forward('SRS1=zzzz=first.example==xYz1=AB=orig.example=alice@second.example'));
    expect(srs1).toMatch(/^SRS1=[A-Za-z0-9+/]{4}=first\.example==xYz1=AB=orig\.example=alice@fwd\.example$/);
    expect(e.reverse(srs1)).toEqual({ kind: 'rewritten', address: 'SRS0=xYz1=AB=orig.example=alice@first.example' });
  });

  it('reverses an address whose case a mail system changed', () => {
    const e = engine();
    const srs = rewritten(e.forward('Alice@Orig.example'));
    expect(e.reverse(srs.toUpperCase())).toEqual({ kind: 'rewritten', address: 'ALICE@ORIG.EXAMPLE' });
    expect(e.reverse(srs.toLowerCase())).toEqual({ kind: 'rewritten', address: 'alice@orig.example' });
  });

  it('reverses up to maxAgeDays after the address was made, and refuses it a day later', () => {
    const srs = rewritten(engine().forward('alice@orig.example'));
    expect(engine({}, T0 + 21 * DAY).reverse(srs).kind).toBe('rewritten');
    expect(engine({}, T0 + 22 * DAY).reverse(srs)).toEqual({ kind: 'invalid', reason: 'expired' });
    expect(engine({ maxAgeDays: 30 }, T0 + 22 * DAY).reverse(srs).kind).toBe('rewritten');
  });

  it('refuses a timestamp from the future, and one that is no base32', () => {
    const srs = rewritten(engine({}, T0 + 2 * DAY).forward('alice@orig.example'));
    expect(engine().reverse(srs)).toEqual({ kind: 'invalid', reason: 'expired' });
    // Same fields hashed with a timestamp of "1!" cannot verify either: the hash comes first.
    expect(engine().reverse('SRS0=abcd=1!=orig.example=alice@fwd.example')).toEqual({ kind: 'invalid', reason: 'bad-hash' });
  });

  it('keeps reversing across the wrap of the 1024-day timestamp cycle', () => {
    const wrapStart = Math.ceil(T0 / DAY / 1024) * 1024 * DAY - DAY; // day 1023 of the cycle
    const srs = rewritten(engine({}, wrapStart).forward('alice@orig.example'));
    expect(srs).toContain('=77=');
    expect(engine({}, wrapStart + 3 * DAY).reverse(srs).kind).toBe('rewritten');
  });

  it('refuses a forged hash, a hash shorter than hashMin, and malformed SRS addresses', () => {
    const e = engine();
    const srs = rewritten(e.forward('alice@orig.example'));
    const forged = srs.replace('alice', 'mallory');
    expect(e.reverse(forged)).toEqual({ kind: 'invalid', reason: 'bad-hash' });
    const short = srs.replace(/^SRS0=(....)/, (_, h: string) => `SRS0=${h.slice(0, 3)}`);
    expect(e.reverse(short)).toEqual({ kind: 'invalid', reason: 'bad-hash' });
    expect(e.reverse('SRS0=abcd=AB@fwd.example')).toEqual({ kind: 'invalid', reason: 'malformed' });
    expect(e.reverse('SRS1=abcd@fwd.example')).toEqual({ kind: 'invalid', reason: 'malformed' });
    expect(engine({ secrets: ['another-secret-value'] }).reverse(srs)).toEqual({ kind: 'invalid', reason: 'bad-hash' });
  });

  it('reverses only SRS addresses of our domain', () => {
    const srs = rewritten(engine().forward('alice@orig.example'));
    expect(engine().reverse(srs.replace('@fwd.example', '@elsewhere.example'))).toEqual({ kind: 'unchanged', reason: 'not-our-domain' });
    expect(engine().reverse('alice@fwd.example')).toEqual({ kind: 'unchanged', reason: 'not-srs' });
    expect(engine().reverse(srs.replace('@fwd.example', '@FWD.Example')).kind).toBe('rewritten');
  });

  it('signs with the first secret and verifies with every one (rotation)', () => {
    const old = rewritten(engine({ secrets: ['old-secret-value'] }).forward('alice@orig.example'));
    const rotated = engine({ secrets: ['new-secret-value', 'old-secret-value'] });
    expect(rotated.reverse(old).kind).toBe('rewritten');
    const fresh = rewritten(rotated.forward('alice@orig.example'));
    expect(fresh).not.toBe(old);
    expect(engine({ secrets: ['new-secret-value'] }).reverse(fresh).kind).toBe('rewritten');
  });

  it('writes the configured separator and hash length, and accepts every separator back', () => {
    const e = engine({ separator: '+', hashLength: 8 });
    const srs = rewritten(e.forward('alice@orig.example'));
    expect(srs).toMatch(/^SRS0\+[A-Za-z0-9+/]{8}=/);
    expect(e.reverse(srs).kind).toBe('rewritten');
    expect(e.reverse(srs.replace('SRS0+', 'SRS0-')).kind).toBe('rewritten');
  });

  it('keeps separators inside the local part as they are', () => {
    const e = engine();
    const srs = rewritten(e.forward('a=b+c-d@orig.example'));
    expect(e.reverse(srs)).toEqual({ kind: 'rewritten', address: 'a=b+c-d@orig.example' });
  });

  it.each([
    ['"jo smith"@orig.example', 'jo smith'],
    ['"a,b"@orig.example', 'a,b'],
    ['"say \\"hi\\""@orig.example', 'say \\"hi\\"'],
  ])('quotes the whole SRS local part for the quoted sender %s (Postfix reads answers in external form), and reverses it', (sender, inner) => {
    const e = engine();
    const srs = rewritten(e.forward(sender));
    expect(srs).toMatch(/^"SRS0=[^=]{4}=[A-Z2-7]{2}=orig\.example=.*"@fwd\.example$/);
    expect(srs).toContain(`=${inner}"@`);
    expect(e.reverse(srs)).toEqual({ kind: 'rewritten', address: sender });
    // The hash is over the local part itself: the unquoted (internal) form gives the same address.
    expect(rewritten(e.forward(`${inner.replace(/\\(.)/g, '$1')}@orig.example`))).toBe(srs);
  });

  // Postfix's external form also puts a backslash before a CR (quote_822_local); "." stops at
  // a CR, so the backslash stayed and the bounce went to another address than the sender's.
  it('reads a backslash before a CR in a quoted local part as Postfix writes it', () => {
    const e = engine();
    const srs = rewritten(e.forward('"a\\\rb"@orig.example'));
    expect(srs).toBe(rewritten(e.forward('a\rb@orig.example')));
    expect(e.reverse(srs.replace('\r', '\\\r'))).toEqual({ kind: 'rewritten', address: '"a\rb"@orig.example' });
  });

  it('leaves an empty quoted local part alone', () => {
    expect(engine().forward('""@orig.example')).toEqual({ kind: 'unchanged', reason: 'no-domain' });
  });

  it.each(['"a@b"@orig.example', 'a%b@orig.example', 'c!d@orig.example', 'SRS0=abcd=AB=x.example=a%b@other.example'])(
    'leaves %s alone: Postfix would refuse the bounce to an SRS address holding "@", "%%" or "!" as relaying',
    (sender) => {
      expect(engine().forward(sender)).toEqual({ kind: 'unchanged', reason: 'routing-characters' });
    },
  );

  it('reverses an SRS0 address whose hash postsrsd 2.2.6 and later wrote in base64url ("-" and "_"), in either case', () => {
    const e = engine();
    const tt = /=([A-Z2-7]{2})=/.exec(rewritten(e.forward('a@orig.example')))![1]!;
    // postsrsd's hash of the same fields, in its alphabet; a user whose hash has "-" or "_".
    const hashOf = (user: string) => createHmac('sha1', 'first-secret-value').update(`${tt.toLowerCase()}orig.example${user}`).digest('base64url').slice(0, 4);
    const user = Array.from({ length: 500 }, (_, i) => `user${i}`).find((u) => /[-_]/.test(hashOf(u)))!;
    const theirs = `SRS0=${hashOf(user)}=${tt}=orig.example=${user}@fwd.example`;
    for (const a of [theirs, theirs.toUpperCase(), theirs.toLowerCase()]) expect(e.reverse(a).kind).toBe('rewritten');
    expect(e.reverse(theirs)).toEqual({ kind: 'rewritten', address: `${user}@orig.example` });
    // And the "+" or "/" we write is still ours: a hash that differs elsewhere is refused.
    expect(e.reverse(theirs.replace(/^SRS0=(.)/, (_, c: string) => `SRS0=${c.toLowerCase() === 'x' ? 'y' : 'x'}`))).toEqual({ kind: 'invalid', reason: 'bad-hash' });
  });

  it('rewrites a sender of an IDN domain written in U-labels (SMTPUTF8), and reverses it', () => {
    const e = engine();
    const srs = rewritten(e.forward('jörg@bücher.example'));
    expect(srs).toMatch(/^SRS0=[^=]{4}=[A-Z2-7]{2}=bücher\.example=jörg@fwd\.example$/);
    expect(e.reverse(srs)).toEqual({ kind: 'rewritten', address: 'jörg@bücher.example' });
  });

  it('judges a U-label domain by its A-label form: full-width localhost is no outside domain, a listed IDN is local', () => {
    expect(engine().forward('root@ｌｏｃａｌｈｏｓｔ')).toEqual({ kind: 'unchanged', reason: 'not-a-public-domain' });
    expect(engine({ localDomains: ['xn--bcher-kva.example'] }).forward('jörg@Bücher.example')).toEqual({ kind: 'unchanged', reason: 'local-domain' });
  });

  it('knows our own and listed domains with a trailing dot', () => {
    expect(engine().forward('bob@FWD.example.')).toEqual({ kind: 'unchanged', reason: 'our-domain' });
    expect(engine().forward('bob@local.example.')).toEqual({ kind: 'unchanged', reason: 'local-domain' });
  });

  // domainKey takes one trailing dot and isPublicDomain took another: "local.example.." passed
  // as public yet matched no listed domain, so a local or excluded sender was signed.
  it.each(['bob@local.example..', 'bob@excluded.example..', 'bob@FWD.example..', 'bob@orig.example..'])(
    'leaves %s alone: a domain with two trailing dots is no domain',
    (sender) => {
      expect(engine().forward(sender)).toEqual({ kind: 'unchanged', reason: 'not-a-public-domain' });
    },
  );

  it("signs another forwarder's SRS1 that points at no outside domain as an SRS0 of its own, which reverses to it", () => {
    const e = engine();
    const theirs = 'SRS1=zzzz=localhost==xYz1=AB=orig.example=alice@second.example';
    const srs = rewritten(e.forward(theirs));
    expect(srs).toMatch(/^SRS0=[^=]{4}=[A-Z2-7]{2}=second\.example=SRS1=zzzz=localhost==/);
    expect(e.reverse(srs)).toEqual({ kind: 'rewritten', address: theirs });
  });
});
