import { chmodSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { createLogger } from '../../../src/lib/log';
import { SrsService } from '../../../src/services/srs';
import { MAX_REQUEST_BYTES } from '../../../src/services/srs/socketmap';
import { MAX_LINE_BYTES } from '../../../src/services/srs/tcp-table';
import { tcpDecode, tcpEncode, tcpTableGet } from '../../helpers/srs-peers';
import { connect, netstring, readReplies, socketmapQuery, startSrsService, type SrsFixture } from '../../helpers/srs-service';

jest.setTimeout(30000);

let f: SrsFixture;
beforeEach(async () => {
  f = await startSrsService();
});
afterEach(async () => await f.service.close());

const srs0 = /^SRS0=[A-Za-z0-9+/]{4}=[A-Z2-7]{2}=orig\.example=alice@fwd\.example$/;

describe('SRS map service: socketmap', () => {
  it('answers OK with the SRS address for forward, and OK with the original for reverse', async () => {
    const fwd = await socketmapQuery(f.service.ports.socketmap, 'forward', 'alice@orig.example');
    expect(fwd).toMatch(/^OK SRS0=/);
    expect(fwd.slice(3)).toMatch(srs0);
    expect(await socketmapQuery(f.service.ports.socketmap, 'reverse', fwd.slice(3))).toBe('OK alice@orig.example');
  });

  it('answers NOTFOUND for a local sender, a non-SRS recipient and a forged SRS address', async () => {
    const p = f.service.ports.socketmap;
    expect(await socketmapQuery(p, 'forward', 'bob@local.example')).toBe('NOTFOUND ');
    expect(await socketmapQuery(p, 'reverse', 'bob@fwd.example')).toBe('NOTFOUND ');
    const fwd = (await socketmapQuery(p, 'forward', 'alice@orig.example')).slice(3);
    expect(await socketmapQuery(p, 'reverse', fwd.replace('alice', 'mallory'))).toBe('NOTFOUND ');
  });

  it('answers PERM for a map name it does not serve, and keeps the connection', async () => {
    const s = await connect(f.service.ports.socketmap);
    const r = readReplies(s, 'netstring', 2);
    s.write(netstring('virtual alice@orig.example') + netstring('forward alice@orig.example'));
    const { replies, closed } = await r;
    expect(replies[0]).toMatch(/^PERM unknown map name/);
    expect(replies[1]).toMatch(/^OK SRS0=/);
    expect(closed).toBe(false);
    s.destroy();
  });

  it('answers 500 pipelined requests in one write, in order', async () => {
    const s = await connect(f.service.ports.socketmap);
    const keys = Array.from({ length: 500 }, (_, i) => `user${i}@orig${i % 7}.example`);
    const r = readReplies(s, 'netstring', keys.length);
    s.write(keys.map((k, i) => netstring(`${i % 2 ? 'reverse' : 'forward'} ${k}`)).join(''));
    const { replies } = await r;
    expect(replies).toHaveLength(500);
    for (const [i, rep] of replies.entries()) expect(rep).toMatch(i % 2 ? /^NOTFOUND $/ : new RegExp(`^OK SRS0=.{4}=..=orig${i % 7}\\.example=user${i}@fwd\\.example$`));
    s.destroy();
  });

  it('answers requests that arrive one byte at a time', async () => {
    const s = await connect(f.service.ports.socketmap);
    const r = readReplies(s, 'netstring', 2);
    for (const ch of netstring('forward alice@orig.example') + netstring('forward bob@local.example')) {
      s.write(ch);
      await new Promise((res) => setImmediate(res));
    }
    expect((await r).replies).toEqual([expect.stringMatching(/^OK SRS0=/), 'NOTFOUND ']);
    s.destroy();
  });

  it.each([
    ['a length that is no number', 'x5:hello,'],
    ['a missing comma', '7:forward;'],
    ['an empty length', ':forward,'],
    ['a length beyond the request limit', `${MAX_REQUEST_BYTES + 1}:`],
    ['a length with too many digits', '000000000000000000001:'],
  ])('answers PERM and closes the connection on %s', async (_what, bytes) => {
    const s = await connect(f.service.ports.socketmap);
    const r = readReplies(s, 'netstring', 2);
    s.write(bytes);
    const { replies, closed } = await r;
    expect(replies).toEqual([expect.stringMatching(/^PERM /)]);
    expect(closed).toBe(true);
  });

  it('answers NOTFOUND for a key longer than any address, without closing', async () => {
    const s = await connect(f.service.ports.socketmap);
    const r = readReplies(s, 'netstring', 2);
    s.write(netstring(`forward ${'a'.repeat(1030)}@orig.example`) + netstring('forward alice@orig.example'));
    const { replies } = await r;
    expect(replies).toEqual(['NOTFOUND ', expect.stringMatching(/^OK SRS0=/)]);
    s.destroy();
  });
});

describe('SRS map service: keys that are bytes', () => {
  /** A netstring of raw bytes (the key as a Postfix without smtputf8_enable may send it). */
  const rawNetstring = (b: Buffer) => Buffer.concat([Buffer.from(`${b.length}:`), b, Buffer.from(',')]);

  it('answers NOTFOUND / 500 for a key that is no UTF-8, instead of signing an address that reverses to another', async () => {
    const latin1 = Buffer.from('j\xf6rg@orig.example', 'latin1');
    const s = await connect(f.service.ports.socketmap);
    const r = readReplies(s, 'netstring', 2);
    s.write(Buffer.concat([rawNetstring(Buffer.concat([Buffer.from('forward '), latin1])), rawNetstring(Buffer.from('forward alice@orig.example'))]));
    expect((await r).replies).toEqual(['NOTFOUND ', expect.stringMatching(/^OK SRS0=/)]);
    s.destroy();
    const t = await connect(f.service.ports.tcpForward);
    const tr = readReplies(t, 'line', 2);
    t.write(Buffer.concat([Buffer.from('get j%F6rg@orig.example\nget '), latin1, Buffer.from('\n')]));
    expect((await tr).replies).toEqual([expect.stringMatching(/^500 /), expect.stringMatching(/^500 /)]);
    t.destroy();
  });

  it('forwards and reverses a UTF-8 sender of a U-label domain byte for byte', async () => {
    const p = f.service.ports.socketmap;
    const fwd = await socketmapQuery(p, 'forward', 'jörg@bücher.example');
    expect(fwd).toMatch(/^OK SRS0=[^=]{4}=[A-Z2-7]{2}=bücher\.example=jörg@fwd\.example$/);
    expect(await socketmapQuery(p, 'reverse', fwd.slice(3))).toBe('OK jörg@bücher.example');
  });
});

describe('SRS map service: tcp_table', () => {
  it('answers 200 with the SRS address on the forward port and the original on the reverse port', async () => {
    const [fwd] = await tcpTableGet(f.service.ports.tcpForward, ['alice@orig.example']);
    expect(fwd!.slice(4)).toMatch(srs0);
    expect(await tcpTableGet(f.service.ports.tcpReverse, [fwd!.slice(4)])).toEqual(['200 alice@orig.example']);
  });

  it('answers 500 for what it leaves alone or refuses, and for requests other than get', async () => {
    expect(await tcpTableGet(f.service.ports.tcpForward, ['bob@local.example', ''])).toEqual([expect.stringMatching(/^500 /), expect.stringMatching(/^500 /)]);
    const [fwd] = await tcpTableGet(f.service.ports.tcpForward, ['alice@orig.example']);
    expect(await tcpTableGet(f.service.ports.tcpReverse, [fwd!.slice(4).replace('alice', 'mallory')])).toEqual([expect.stringMatching(/^500 /)]);
    const s = await connect(f.service.ports.tcpForward);
    const r = readReplies(s, 'line', 2);
    s.write('put a b\nget alice@orig.example\n');
    expect((await r).replies).toEqual([expect.stringMatching(/^500 /), expect.stringMatching(/^200 SRS0=/)]);
    s.destroy();
  });

  it('decodes %-encoded keys and encodes the reply (a space and UTF-8 in the local part)', async () => {
    const [fwd] = await tcpTableGet(f.service.ports.tcpForward, ['"jo ë"@orig.example']);
    expect(fwd).toMatch(/^200 "SRS0=\S+=orig\.example=jo%20%C3%AB"@fwd\.example$/);
    const [back] = await tcpTableGet(f.service.ports.tcpReverse, [tcpDecode(fwd!.slice(4))]);
    expect(back).toBe(`200 ${tcpEncode('"jo ë"@orig.example').replace(/%([0-9a-f]{2})/g, (m) => m.toUpperCase())}`);
    // A "%" sent as %25 arrives as "%" (not a broken escape), and is left alone as a routing character.
    expect(await tcpTableGet(f.service.ports.tcpForward, ['bad%zzescape@orig.example'])).toEqual(['500 routing-characters']);
  });

  it('answers 500 for a broken %-escape', async () => {
    const s = await connect(f.service.ports.tcpForward);
    const r = readReplies(s, 'line', 1);
    s.write('get bad%zzescape@orig.example\n');
    expect((await r).replies).toEqual([expect.stringMatching(/^500 malformed/)]);
    s.destroy();
  });

  it('answers 500 pipelined requests in one write, in order', async () => {
    const keys = Array.from({ length: 500 }, (_, i) => `user${i}@orig.example`);
    const replies = await tcpTableGet(f.service.ports.tcpForward, keys);
    for (const [i, rep] of replies.entries()) expect(rep).toMatch(new RegExp(`^200 SRS0=.{4}=..=orig\\.example=user${i}@fwd\\.example$`));
  });

  it('answers 500 for a key longer than any address, and closes on a line beyond the limit', async () => {
    expect(await tcpTableGet(f.service.ports.tcpForward, [`${'a'.repeat(1030)}@orig.example`])).toEqual(['500 key%20too%20long']);
    const s = await connect(f.service.ports.tcpForward);
    const r = readReplies(s, 'line', 2);
    s.write(`get ${'a'.repeat(MAX_LINE_BYTES + 10)}`);
    const { replies, closed } = await r;
    expect(replies).toEqual(['500 request too long']);
    expect(closed).toBe(true);
  });
});

describe('SRS map service: connections', () => {
  it('serves 1,000 concurrent connections on each protocol', async () => {
    const ports = f.service.ports;
    const conns = await Promise.all(Array.from({ length: 1000 }, (_, i) => connect(i % 2 ? ports.socketmap : ports.tcpForward)));
    // All open at once: the server has accepted every one before any request is sent.
    const deadline = Date.now() + 10000;
    while (f.service.connectionCount < 1000 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 10));
    expect(f.service.connectionCount).toBe(1000);
    const answers = await Promise.all(
      conns.map((s, i) => {
        const r = readReplies(s, i % 2 ? 'netstring' : 'line', 1, 20000);
        s.write(i % 2 ? netstring(`forward u${i}@orig.example`) : `get u${i}@orig.example\n`);
        return r.then(({ replies }) => replies[0]);
      }),
    );
    for (const [i, a] of answers.entries()) expect(a).toMatch(new RegExp(`^(OK|200) SRS0=.{4}=..=orig\\.example=u${i}@fwd\\.example$`));
    for (const s of conns) s.destroy();
  });

  it('forgets a client that disconnects mid-request, and keeps serving others', async () => {
    for (const [port, partial] of [
      [f.service.ports.socketmap, '26:forward alice@or'],
      [f.service.ports.tcpForward, 'get alice@or'],
    ] as const) {
      const s = await connect(port);
      s.write(partial);
      await new Promise((res) => setTimeout(res, 20));
      s.resetAndDestroy();
    }
    const deadline = Date.now() + 2000;
    while (f.service.connectionCount > 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 10));
    expect(f.service.connectionCount).toBe(0);
    expect(await socketmapQuery(f.service.ports.socketmap, 'forward', 'alice@orig.example')).toMatch(/^OK SRS0=/);
  });

  it('closes a connection that trickles bytes but completes no request within idleTimeoutMs', async () => {
    await f.service.close();
    f = await startSrsService({ idleTimeoutMs: 1000 });
    for (const port of [f.service.ports.socketmap, f.service.ports.tcpForward]) {
      const s = await connect(port);
      let closed = false;
      s.once('close', () => (closed = true));
      s.on('error', () => undefined);
      // One byte every 100 ms of a request that never ends: 30 s of it unless the server hangs up.
      const start = port === f.service.ports.socketmap ? '900:forward ' : 'get ';
      for (let i = 0; i < 300 && !closed; i++) {
        s.write(i < start.length ? start[i]! : 'a');
        await new Promise((res) => setTimeout(res, 100));
      }
      expect(closed).toBe(true);
    }
  });

  it('closes a connection that sends no request within idleTimeoutMs', async () => {
    await f.service.close();
    f = await startSrsService({ idleTimeoutMs: 1000 });
    const s = await connect(f.service.ports.socketmap);
    const t = Date.now();
    await new Promise((res) => s.once('close', res));
    expect(Date.now() - t).toBeGreaterThanOrEqual(900);
  });
});

describe('SRS map service: secrets and reload', () => {
  it('refuses to start with a secrets file everyone can read, binding nothing', async () => {
    chmodSync(f.secretsFile, 0o644);
    const port = f.service.ports.socketmap;
    await f.service.close();
    const other = new SrsService(f.config({ socketmapPort: port }), { log: createLogger('fatal') });
    await expect(other.start()).rejects.toMatchObject({ code: 'CFG_SRS_SECRETS' });
    await new Promise<void>((resolve, reject) => {
      const probe = net.createServer().once('error', reject);
      probe.listen(port, '127.0.0.1', () => probe.close(() => resolve()));
    });
    chmodSync(f.secretsFile, 0o600);
    f = await startSrsService();
  });

  it('refuses a reload whose secrets file is missing and keeps answering with the running secrets', async () => {
    const [made] = await tcpTableGet(f.service.ports.tcpForward, ['alice@orig.example']);
    rmSync(f.secretsFile);
    await expect(f.service.reload(f.config())).rejects.toMatchObject({ code: 'CFG_SRS_SECRETS' });
    expect(await tcpTableGet(f.service.ports.tcpReverse, [made!.slice(4)])).toEqual(['200 alice@orig.example']);
  });

  it('takes a new signing secret on reload and still reverses addresses signed with the old one below it', async () => {
    const [old] = await tcpTableGet(f.service.ports.tcpForward, ['alice@orig.example']);
    writeFileSync(f.secretsFile, 'a-brand-new-secret-2\nservice-test-secret-1\n');
    await f.service.reload(f.config());
    const [fresh] = await tcpTableGet(f.service.ports.tcpForward, ['alice@orig.example']);
    expect(fresh).not.toBe(old);
    expect(await tcpTableGet(f.service.ports.tcpReverse, [old!.slice(4), fresh!.slice(4)])).toEqual(['200 alice@orig.example', '200 alice@orig.example']);
  });

  it('moves to new ports on reload', async () => {
    const before = f.service.ports.socketmap;
    await f.service.reload(f.config({ socketmapPort: 0, tcpForwardPort: 0, tcpReversePort: 0, maxAgeDays: 30 }));
    expect(await socketmapQuery(f.service.ports.socketmap, 'forward', 'alice@orig.example')).toMatch(/^OK /);
    expect(typeof before).toBe('number');
  });
});
