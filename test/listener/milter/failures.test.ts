/**
 * Failure safety of the milter listener: a stage that times out (DNS that never answers) is
 * 451 4.3.0, or an unchanged accept under milter.failureAction: accept; SMFIC_ABORT during
 * the pipeline stops it; an MTA that goes away mid-body leaves no spool file; a silent
 * connection is closed after socketIdleTimeoutMs; the bank's size and recipient limits are
 * answered 552 5.3.4 and 452 4.5.3.
 */
import dgram from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MilterClient, messagePackets, pkt, SMFIC } from '../../helpers/milter-client';
import { startHarness, type Harness } from '../../helpers/postseal';
import { waitFor } from '../../e2e/wait';

const INBOUND = ['loop-guard', 'header-sanity', 'dkim-verify', 'spf', 'dmarc', 'authentication-results'];
const header: [string, string][] = [
  ['From', ' <bob@remote.test>'],
  ['Subject', ' hello'],
];

describe('milter listener failures', () => {
  let silentDns: dgram.Socket;
  let h: Harness;
  beforeAll(async () => {
    // A resolver that takes every query and answers none: each DNS stage runs into its timeout.
    silentDns = dgram.createSocket('udp4');
    await new Promise<void>((r) => silentDns.bind(0, '127.0.0.1', r));
    h = await startHarness({
      forwardPort: 9,
      banks: { default: { stages: INBOUND, maxMessageSizeBytes: 200_000, maxRecipients: 2, timeouts: { stageTimeoutMs: 300, socketIdleTimeoutMs: 1000 } } },
      main: {
        listeners: [
          { port: 0, bank: 'default', protocol: 'milter' },
          { port: 0, bank: 'default', protocol: 'milter', milter: { failureAction: 'accept' } },
        ],
        dns: { servers: [`127.0.0.1:${silentDns.address().port}`], timeoutMs: 10000, retries: 0 },
      },
    });
  }, 30_000);
  afterAll(async () => {
    await h?.close();
    silentDns?.close();
  });

  async function open(which: 0 | 1): Promise<MilterClient> {
    const c = await MilterClient.connect(h.app.listeners[which].port);
    await c.negotiate();
    return c;
  }

  function message(c: MilterClient, body = 'hi\r\n') {
    const p = messagePackets({ from: 'bob@remote.test', to: ['user@example.test'], header, body });
    c.send(...p.envelope, ...p.content);
    return p;
  }

  it('answers a stage timeout with 451 4.3.0 from the reply table', async () => {
    const c = await open(0);
    const p = message(c);
    c.send(p.eom);
    expect((await c.next()).code).toBe('c');
    const replies = await c.untilFinal();
    c.close();
    expect(replies.map((r) => r.data.toString())).toEqual(['451 4.3.0 Content check timed out, try again later\0']);
  });

  it('lets the message through unchanged on a stage timeout with failureAction accept', async () => {
    const c = await open(1);
    const p = message(c);
    c.send(p.eom);
    expect((await c.next()).code).toBe('c');
    const replies = await c.untilFinal();
    c.close();
    expect(replies.map((r) => r.code)).toEqual(['c']);
    expect(h.logs.some((l) => l.msg === 'message' && l.failureAction === 'accept' && l.reason === 'STAGE_TIMEOUT')).toBe(true);
  });

  it('stops the pipeline when the MTA aborts the message it is waiting for', async () => {
    // Stages of 300 ms each would take over a second; the abort ends the run at once.
    const c = await open(0);
    const p = message(c);
    c.send(p.eom);
    expect((await c.next()).code).toBe('c');
    const before = h.logs.length;
    const sent = Date.now();
    c.send(pkt(SMFIC.ABORT));
    const line = await waitFor('the aborted message', async () => h.logs.slice(before).find((l) => l.msg === 'message'));
    c.close();
    expect(line.reply).toBe('none (the MTA aborted the message)');
    expect(Date.now() - sent).toBeLessThan(600);
  });

  it('removes the spool file of a message whose MTA went away mid-body', async () => {
    const c = await open(0);
    // Past the harness's 64 KiB memory threshold: the spool is a file.
    message(c, 'x'.repeat(100_000));
    await waitFor('a spool file', async () => h.spoolFiles().length > 0);
    c.close();
    await waitFor('the spool file to go', async () => h.spoolFiles().length === 0);
  });

  it('answers a message over maxMessageSizeBytes with 552 5.3.4 and keeps no spool file', async () => {
    const c = await open(0);
    const p = message(c, 'y'.repeat(300_000));
    c.send(p.eom);
    expect((await c.next()).code).toBe('c');
    const replies = await c.untilFinal();
    c.close();
    expect(replies.map((r) => r.data.toString())).toEqual(['552 5.3.4 Message size exceeds fixed limit\0']);
    expect(h.spoolFiles()).toEqual([]);
  });

  it("answers recipients past the bank's maxRecipients with 452 4.5.3", async () => {
    const c = await open(0);
    const p = messagePackets({ from: 'bob@remote.test', to: ['a@example.test', 'b@example.test', 'c@example.test'], header, body: 'hi\r\n' });
    c.send(...p.envelope);
    const codes = [await c.next(), await c.next(), await c.next()].map((r) => (r.code === 'y' ? r.data.toString() : r.code));
    c.close();
    expect(codes).toEqual(['c', 'c', '452 4.5.3 Too many recipients\0']);
  });

  it("keeps every recipient of a local submission (client port 0) past maxRecipients, which Postfix's cleanup cannot take refused", async () => {
    const c = await open(0);
    const p = messagePackets({
      client: { name: 'localhost', addr: '127.0.0.1', port: 0 },
      from: 'alice@example.test',
      to: ['a@example.test', 'b@example.test', 'c@example.test'],
      header,
      body: 'hi\r\n',
    });
    c.send(...p.envelope);
    const codes = [await c.next(), await c.next(), await c.next()].map((r) => (r.code === 'y' ? r.data.toString() : r.code));
    c.close();
    expect(codes).toEqual(['c', 'c', 'c']);
  });

  it('closes a connection that does not negotiate within socketIdleTimeoutMs', async () => {
    const c = await MilterClient.connect(h.app.listeners[0].port);
    await c.closedByServer(3000);
  });
});

/** A milter listener with its own spool folder and memory threshold, for one describe block. */
function spoolHarness(bank: Record<string, unknown>, memoryThresholdBytes: number) {
  const ctx = { h: undefined as unknown as Harness, spoolDir: '' };
  beforeAll(async () => {
    ctx.spoolDir = mkdtempSync(path.join(tmpdir(), 'postseal-milter-spool-'));
    ctx.h = await startHarness({
      forwardPort: 9,
      banks: { default: bank },
      main: { listeners: [{ port: 0, bank: 'default', protocol: 'milter' }], spool: { dir: ctx.spoolDir, memoryThresholdBytes } },
    });
  }, 30_000);
  afterAll(async () => {
    await ctx.h?.close();
    rmSync(ctx.spoolDir, { recursive: true, force: true });
  });
  return ctx;
}

describe('milter listener size limit below the spool memory threshold', () => {
  // Messages stay in memory up to 1 MiB: the 100 KB limit is passed before any spool file.
  const t = spoolHarness({ stages: ['header-sanity'], maxMessageSizeBytes: 100_000 }, 1048576);

  async function send(body: string) {
    const c = await MilterClient.connect(t.h.app.listeners[0].port);
    await c.negotiate();
    const p = messagePackets({ from: 'bob@remote.test', to: ['user@example.test'], header, body });
    c.send(...p.envelope, ...p.content, p.eom);
    expect((await c.next()).code).toBe('c'); // RCPT
    const replies = await c.untilFinal();
    c.close();
    return replies.map((r) => (r.code === 'y' ? r.data.toString() : r.code));
  }

  it('answers 552 5.3.4 past maxMessageSizeBytes while the message is still in memory (the limit below the threshold), and passes one under it', async () => {
    expect(await send('z'.repeat(150_000))).toEqual(['552 5.3.4 Message size exceeds fixed limit\0']);
    expect((await send('z'.repeat(90_000))).at(-1)).toBe('c');
  });
});

describe('milter listener spool file failing mid-body', () => {
  const t = spoolHarness({ stages: ['header-sanity'], timeouts: { socketIdleTimeoutMs: 10_000 } }, 50_000);

  it('keeps reading after the spool failed and answers 451 at end of message, not after the idle timeout', async () => {
    const c = await MilterClient.connect(t.h.app.listeners[0].port);
    await c.negotiate();
    const p = messagePackets({ from: 'bob@remote.test', to: ['user@example.test'], header, body: 'y'.repeat(40_000) });
    c.send(...p.envelope, ...p.content);
    expect((await c.next()).code).toBe('c'); // RCPT
    // The folder goes away: the spool file cannot be created once the message passes the threshold.
    rmSync(t.spoolDir, { recursive: true, force: true });
    c.send(pkt(SMFIC.BODY, 'x'.repeat(60_000)));
    await new Promise((r) => setTimeout(r, 200));
    // More body after the spool gave up: written to a destroyed stream, which never drains.
    for (let i = 0; i < 10; i++) c.send(pkt(SMFIC.BODY, 'x'.repeat(60_000)));
    c.send(p.eom);
    const replies = await c.untilFinal(3000);
    c.close();
    expect(replies.map((r) => r.data.toString().slice(0, 3))).toEqual(['451']);
  });
});

describe('milter listener idle timeout and a slow SMTP client', () => {
  const t = spoolHarness({ stages: ['header-sanity'], timeouts: { socketIdleTimeoutMs: 1000 } }, 1048576);
  const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it("keeps a negotiated connection through silences longer than socketIdleTimeoutMs (Postfix's SMTP client at its own pace) and serves its messages", async () => {
    const c = await MilterClient.connect(t.h.app.listeners[0].port);
    await c.negotiate();
    const p = messagePackets({ from: 'bob@remote.test', to: ['user@example.test'], header, body: 'hi\r\n', data: true });
    const [connect, helo, mail, rcpt, data] = p.envelope;
    // Postfix holds CONNECT, HELO and MAIL (no reply wanted) until RCPT, so a client slow to
    // greet or to send RCPT is silence here; so is its DATA: cleanup hands over the header and
    // body once the DATA is complete.
    await pause(1500);
    c.send(connect, helo, mail, rcpt);
    expect((await c.next()).code).toBe('c');
    c.send(data);
    expect((await c.next()).code).toBe('c');
    await pause(1500);
    c.send(...p.content, p.eom);
    expect((await c.untilFinal()).map((r) => r.code)).toEqual(['c']);
    // And between messages of one SMTP session.
    await pause(1500);
    const next = messagePackets({ from: 'bob@remote.test', to: ['user@example.test'], header, body: 'again\r\n', withConnect: false });
    c.send(...next.envelope, ...next.content, next.eom);
    expect((await c.next()).code).toBe('c');
    expect((await c.untilFinal()).map((r) => r.code)).toEqual(['c']);
    c.close();
  });
});
