/**
 * The milter listener over a real socket, driven by a hand-written MTA side
 * (test/helpers/milter-client.ts): negotiation, the bank chosen by listener and by macro,
 * modifications derived from the pipeline (signature and A-R on top, forged A-R removed,
 * the body replaced by the seven-bit stage), verdict replies, abort and several messages per
 * connection, and failures that close the connection or tempfail.
 */
import { startDnsServer, type DnsServer } from '../../helpers/dns-server';
import { rsaKey, writeSigningFiles, zoneFor } from '../../helpers/dkim-verifiers';
import { MilterClient, messagePackets, pkt, SMFIC, type MilterReply } from '../../helpers/milter-client';
import { startHarness, type Harness } from '../../helpers/postseal';
import { createProcessMetrics } from '../../../src/services/metrics';

const key = { ...rsaKey, domain: 'example.org' };
const ORIGINATING = ['loop-guard', 'header-sanity', 'authentication-results', 'seven-bit', 'dkim-sign'];
const INBOUND = ['loop-guard', 'header-sanity', 'dkim-verify', 'spf', 'dmarc', 'authentication-results'];

const cstrings = (b: Buffer) => b.toString('latin1').split('\0').slice(0, -1);
/** An SMFIR_INSHEADER / CHGHEADER as [code, index, name, value]. */
const mod = (r: MilterReply) => [r.code, r.data.readUInt32BE(0), ...cstrings(r.data.subarray(4))];
const header = (from: string, extra: [string, string][] = []): [string, string][] => [
  ['From', ` <${from}>`],
  ['To', ' <user@example.test>'],
  ['Subject', ' hello'],
  ['Message-ID', ' <m1@example.org>'],
  ...extra,
];

describe('milter listener', () => {
  let dns: DnsServer;
  let h: Harness;
  let port: number;
  const metrics = createProcessMetrics();
  beforeAll(async () => {
    dns = await startDnsServer({ ...zoneFor([key]), '_dmarc.strict.test': { TXT: ['v=DMARC1; p=reject'] } });
    h = await startHarness({
      telemetry: metrics.telemetry,
      forwardPort: 9,
      banks: { default: { stages: INBOUND, headerSanity: { multipleFrom: 'reject' } }, ORIGINATING: { originating: true, stages: ORIGINATING } },
      main: {
        listeners: [{ port: 0, bank: 'default', protocol: 'milter' }],
        dns: { servers: [dns.server] },
        authservId: 'filter.test',
        dkimSign: writeSigningFiles([key], [{ author: 'example.org', keys: [key.name] }]),
        bankRules: {
          macros: [
            { macro: '{daemon_name}', values: ['ORIGINATING'], bank: 'ORIGINATING' },
            { macro: '{auth_authen}', bank: 'ORIGINATING' },
          ],
        },
      },
    });
    port = h.app.listeners[0].port;
  }, 30_000);
  afterAll(async () => {
    await h?.close();
    await dns?.close();
  });

  async function session(): Promise<MilterClient> {
    const c = await MilterClient.connect(port);
    await c.negotiate();
    return c;
  }

  async function send(c: MilterClient, m: Parameters<typeof messagePackets>[0]): Promise<MilterReply[]> {
    const p = messagePackets(m);
    c.send(...p.envelope, ...p.content, p.eom);
    // RCPT is answered (the bank's recipient limit), one CONTINUE each.
    for (const _ of m.to) expect((await c.next()).code).toBe('c');
    return c.untilFinal();
  }

  it('asks for header and body changes, no replies to routine commands, leading spaces and the macros of the bank rules', async () => {
    const c = await MilterClient.connect(port);
    const n = await c.negotiate();
    c.close();
    expect(n.version).toBe(6);
    expect(n.actions).toBe(0x01 | 0x02 | 0x10 | 0x100);
    // NR_HDR, NR_BODY, NR_EOH and HDR_LEADSPC among them; RCPT is answered (recipient limit).
    expect(n.protocol & 0x80).toBe(0x80);
    expect(n.protocol & 0x80000).toBe(0x80000);
    expect(n.protocol & 0x100000).toBe(0x100000);
    expect(n.protocol & 0x8000).toBe(0);
    // DATA is sent and answered (neither SMFIP_NODATA nor SMFIP_NR_DATA): see the next test.
    expect(n.protocol & 0x200).toBe(0);
    expect(n.protocol & 0x10000).toBe(0);
    expect(n.macros.get(2)).toContain('{daemon_name}');
    expect(n.macros.get(2)).toContain('{auth_authen}');
    expect(n.macros.get(5)).toBe('i');
  });

  it("answers SMFIC_DATA at once, so Postfix's DATA-stage packet never waits for a delayed ACK", async () => {
    // Postfix's smtpd writes the DATA macros (and DATA), then hands the connection to its cleanup
    // server. Unanswered, that small packet stays unacknowledged for up to 40 ms (delayed ACK)
    // and Nagle holds cleanup's header and body behind it: every message waited ~40 ms.
    const c = await session();
    const p = messagePackets({
      from: 'alice@example.org',
      to: ['user@example.test'],
      macros: { T: { i: 'DATA1' } },
      header: header('alice@example.org'),
      body: 'hi\r\n',
      data: true,
    });
    c.send(...p.envelope);
    expect((await c.next()).code).toBe('c'); // RCPT
    expect((await c.next()).code).toBe('c'); // DATA
    c.send(...p.content, p.eom);
    const replies = await c.untilFinal();
    c.close();
    expect(replies.at(-1)?.code).toBe('c');
  });

  it('signs mail chosen into ORIGINATING by {daemon_name}, inserting the signature on top, and continues', async () => {
    const c = await session();
    const replies = await send(c, {
      from: 'alice@example.org',
      to: ['user@example.test'],
      macros: { C: { '{daemon_name}': 'ORIGINATING' }, E: { i: 'ABC123' } },
      header: header('alice@example.org'),
      body: 'hi\r\n',
    });
    c.close();
    // The signature on top; loop-guard's trace field below it.
    expect(replies.map((r) => r.code)).toEqual(['i', 'i', 'c']);
    expect(mod(replies[1]).slice(0, 3)).toEqual(['i', 1, 'X-Postseal-Trace']);
    const [code, index, name, value] = mod(replies[0]);
    expect([code, index, name]).toEqual(['i', 0, 'DKIM-Signature']);
    expect(value).toMatch(/^ v=1; a=rsa-sha256; .*d=example\.org/s);
    // Folded with LF, as Postfix stores header lines.
    expect(value).not.toContain('\r');
    const line = h.logs.find((l) => l.msg === 'message' && l.queueId === 'ABC123');
    expect(line).toMatchObject({ protocol: 'milter', bank: 'ORIGINATING', verdict: 'pass', bankRule: 'macros[0] {daemon_name}=ORIGINATING' });
  });

  it('signs mail of a SASL-authenticated client ({auth_authen} set at MAIL) on the MX listener', async () => {
    const c = await session();
    const replies = await send(c, {
      from: 'alice@example.org',
      to: ['user@example.test'],
      macros: { M: { '{auth_authen}': 'alice', i: 'AUTH1' } },
      header: header('alice@example.org'),
      body: 'hi\r\n',
    });
    c.close();
    expect(mod(replies[0]).slice(0, 3)).toEqual(['i', 0, 'DKIM-Signature']);
    expect(h.logs.find((l) => l.msg === 'message' && l.queueId === 'AUTH1')).toMatchObject({ bank: 'ORIGINATING', bankRule: 'macros[1] {auth_authen}=alice' });
  });

  it('removes a forged Authentication-Results with our authserv-id and puts ours on top', async () => {
    const c = await session();
    const forged: [string, string][] = [
      ['Authentication-Results', ' other.test; spf=pass'],
      ['Authentication-Results', ' filter.test; dkim=pass header.d=example.org'],
    ];
    const replies = await send(c, { from: 'bob@remote.test', to: ['user@example.test'], header: header('bob@remote.test', forged), body: 'hi\r\n' });
    c.close();
    expect(replies.map((r) => r.code)).toEqual(['m', 'i', 'i', 'c']);
    expect(mod(replies[0])).toEqual(['m', 2, 'Authentication-Results', '']);
    expect(mod(replies[1]).slice(0, 3)).toEqual(['i', 0, 'Authentication-Results']);
  });

  it('replaces an 8-bit body with its quoted-printable form and changes Content-Transfer-Encoding in place', async () => {
    const c = await session();
    const extra: [string, string][] = [
      ['MIME-Version', ' 1.0'],
      ['Content-Type', ' text/plain; charset=utf-8'],
      ['Content-Transfer-Encoding', ' 8bit'],
    ];
    const replies = await send(c, {
      from: 'alice@example.org',
      to: ['user@example.test'],
      fromArgs: ['BODY=8BITMIME'],
      macros: { C: { '{daemon_name}': 'ORIGINATING' } },
      header: header('alice@example.org', extra),
      body: 'Gr\u00fc\u00dfe\r\n',
    });
    c.close();
    expect(replies.map((r) => r.code)).toEqual(['m', 'i', 'i', 'b', 'c']);
    expect(mod(replies[0])).toEqual(['m', 1, 'Content-Transfer-Encoding', ' quoted-printable']);
    expect(replies[3].data.toString('latin1')).toBe('Gr=C3=BC=C3=9Fe\r\n');
  });

  it('answers a DMARC p=reject failure with 550 5.7.1 from the reply table', async () => {
    const c = await session();
    const replies = await send(c, { from: 'eve@strict.test', to: ['user@example.test'], header: header('eve@strict.test'), body: 'hi\r\n' });
    c.close();
    expect(replies.map((r) => r.code)).toEqual(['y']);
    expect(replies[0].data.toString()).toMatch(/^550 5\.7\.1 Rejected by DMARC policy.*\0$/);
  });

  it('forgets an aborted message and serves the next one on the same connection', async () => {
    const c = await session();
    const first = messagePackets({
      from: 'alice@example.org',
      to: ['user@example.test'],
      macros: { C: { '{daemon_name}': 'ORIGINATING' } },
      header: header('alice@example.org'),
      body: 'one\r\n',
    });
    c.send(...first.envelope, ...first.content, pkt(SMFIC.ABORT));
    expect((await c.next()).code).toBe('c');
    const replies = await send(c, { withConnect: false, from: 'alice@example.org', to: ['user@example.test'], header: header('alice@example.org'), body: 'two\r\n' });
    const again = await send(c, { withConnect: false, from: 'alice@example.org', to: ['user@example.test'], header: header('alice@example.org'), body: 'three\r\n' });
    c.close();
    expect(replies.map((r) => r.code)).toEqual(['i', 'i', 'c']);
    expect(again.map((r) => r.code)).toEqual(['i', 'i', 'c']);
  });

  it('closes the connection on a packet that is not milter', async () => {
    const c = await MilterClient.connect(port);
    c.socket.write('GET / HTTP/1.0\r\n\r\n');
    await c.closedByServer();
  });

  it('closes the connection on a body before any MAIL', async () => {
    const c = await session();
    c.send(pkt(SMFIC.BODY, 'x'));
    await c.closedByServer();
  });

  it('answers a header section over spool.maxHeaderBytes with 552 5.3.4, keeping none of the body', async () => {
    const c = await session();
    const big: [string, string][] = Array.from({ length: 40 }, (_, i) => [`X-Filler-${i}`, ` ${'y'.repeat(30000)}`]);
    const replies = await send(c, {
      from: 'bob@remote.test',
      to: ['user@example.test'],
      macros: { E: { i: 'BIGHDR1' } },
      header: header('bob@remote.test', big),
      body: 'z'.repeat(300_000),
    });
    c.close();
    expect(replies.map((r) => r.data.toString())).toEqual(['552 5.3.4 Message header size exceeds limit\0']);
    // The 300 KB body after it was neither held in memory nor written to a spool file.
    expect(h.logs.find((l) => l.msg === 'message' && l.queueId === 'BIGHDR1')).toMatchObject({ size: 0, code: 'HEADER_TOO_BIG' });
  });

  it('refuses a message with two From fields (a DMARC bypass) with 550 and an enhanced code, before any check passes it', async () => {
    const c = await session();
    // The second From is the forged one a reader may show: aligned DKIM for the first would not cover it.
    const replies = await send(c, {
      from: 'bob@remote.test',
      to: ['user@example.test'],
      macros: { E: { i: 'TWOFROM1' } },
      header: header('bob@remote.test', [['From', ' <ceo@strict.test>']]),
      body: 'hi\r\n',
    });
    c.close();
    const reply = replies.at(-1)!;
    expect(reply.code).toBe('y');
    expect(reply.data.toString()).toMatch(/^550 5\.\d\.\d /);
    const line = h.logs.find((l) => l.msg === 'message' && l.queueId === 'TWOFROM1');
    expect(line).toMatchObject({ verdict: 'reject', reason: 'HEADER_SANITY_MULTIPLE_FROM' });
  });

  it('counts milter messages and connections in the metrics as the SMTP listener does', async () => {
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/^postseal_messages_total\{bank="ORIGINATING",verdict="pass",reply="2xx"\} [1-9]/m);
    expect(text).toMatch(/^postseal_messages_total\{bank="default",verdict="reject",reply="5xx"\} [1-9]/m);
    expect(text).toMatch(/^postseal_smtp_connections_total [1-9]/m);
  });
});
