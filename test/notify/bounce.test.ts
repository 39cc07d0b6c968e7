/**
 * A bounce verdict (destiny `bounce`) over real sockets: a listener whose bank's check stage
 * decides `bounce`, a sink as the forward target and another as the notify target. The
 * upstream hears 250 only after the notify target accepted a DSN from <> to the envelope
 * sender; nothing goes downstream; a retry sends no second DSN; the null sender gets none; a
 * notify target that is down is a 451 (and the retry then sends one DSN); one that refuses
 * the DSN for good makes the message a 5xx, so Postfix bounces it itself.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseNetworks } from '../../src/config/networks';
import { createLogger } from '../../src/lib/log';
import { startListener, type Listener } from '../../src/listener/listener';
import { startMilterListener } from '../../src/listener/milter/listener';
import type { SessionContext } from '../../src/listener/session';
import { destinyDecision } from '../../src/pipeline/destiny';
import { createPipeline } from '../../src/pipeline/runner';
import { defineStage } from '../../src/pipeline/stage';
import { DownstreamPool } from '../../src/reinject/pool';
import { replies } from '../../src/smtp/replies';
import { openSqliteStore } from '../../src/store/sqlite';
import type { Store } from '../../src/store/store';
import { loadTestBank } from '../helpers/banks';
import { startSink, type Sink } from '../helpers/sink';
import { TestClient } from '../helpers/smtp-client';
import { MilterClient, messagePackets } from '../helpers/milter-client';
import { testStageDeps } from '../helpers/stage-run';

/** Set by a test: the check stops firing, as a check may on a retry (a signature fetched, a rule changed). */
let checksPass = false;
/** Set by a test: the category of the bounce decision (banned, for the forged-sender rule). */
let bounceCategory: 'banned' | undefined;

// A check stage (registered id loop-guard, so the bank schema takes it) whose finding's destiny is bounce.
const bouncer = defineStage<unknown, 'LOOP_GUARD_TRACE_SEEN'>({
  id: 'loop-guard',
  phase: 'check',
  findings: ['LOOP_GUARD_TRACE_SEEN'],
  rules: { LOOP_GUARD_TRACE_SEEN: () => destinyDecision('bounce', replies.contentRejected, [], bounceCategory) },
  create: () => ({
    id: 'loop-guard',
    run: async (tx) => ({ findings: !checksPass && tx.message.get('subject').some((f) => f.raw.includes('bounce me')) ? [{ code: 'LOOP_GUARD_TRACE_SEEN' }] : [] }),
  }),
});

const logs: Record<string, unknown>[] = [];
const log = createLogger('info', { write: (line: string) => void logs.push(JSON.parse(line)) });
let forward: Sink;
let notify: Sink;
let store: Store;
let listener: Listener;
let ctx: SessionContext;

function context(notifyPort: number): SessionContext {
  const bank = loadTestBank({ stages: ['loop-guard'], forward: { host: '127.0.0.1', port: forward.port }, notify: { host: '127.0.0.1', port: notifyPort } });
  const spool = { dir: mkdtempSync(path.join(tmpdir(), 'bounce-spool-')), memoryThresholdBytes: 65536 };
  return {
    bank,
    hostname: 'filter.test',
    log,
    trustedNetworks: parseNetworks(['127.0.0.0/8']),
    pool: new DownstreamPool(bank.forward, 'filter.test', log),
    pipeline: createPipeline('default', bank, [bouncer], { ...testStageDeps({ server: '127.0.0.1:9' }), spool }),
    spool,
    shutdownGraceMs: 1000,
    bounce: { pool: new DownstreamPool(bank.notify!, 'filter.test', log), store, hostname: 'filter.test', log },
  };
}

beforeAll(async () => {
  forward = await startSink();
  notify = await startSink();
  store = openSqliteStore({ file: path.join(mkdtempSync(path.join(tmpdir(), 'bounce-db-')), 's.db'), keyPrefix: 'ps:', busyTimeoutMs: 1000 });
  ctx = context(notify.port);
  listener = await startListener({ address: '127.0.0.1', port: 0, bank: 'default', protocol: 'smtp', maxConnections: 10 }, () => ctx);
});
afterAll(async () => {
  await listener.close();
  await store.close();
  await forward.close();
  await notify.close();
});

const message = (n: string) => `From: <bob@remote.test>\r\nSubject: bounce me ${n}\r\nMessage-ID: <${n}@remote.test>\r\n\r\nthe content\r\n`;

async function send(data: string, opts: { from?: string; ident: string; rcptArgs?: string }) {
  const c = await TestClient.connect(listener.port);
  try {
    await c.cmd('EHLO relay.test');
    await c.cmd(`XFORWARD ADDR=198.51.100.7 IDENT=${opts.ident}`);
    await c.cmd(`MAIL FROM:<${opts.from ?? 'bob@remote.test'}> ENVID=e1`);
    await c.cmd(`RCPT TO:<user@example.test>${opts.rcptArgs ?? ''}`);
    await c.cmd('DATA');
    return await c.cmd(`${data}.`);
  } finally {
    await c.quit();
  }
}

it('answers 250 only after the notify target took a DSN from <> to the sender; nothing goes downstream', async () => {
  const before = notify.received.length;
  const r = await send(message('one'), { ident: 'Q1', rcptArgs: ' ORCPT=rfc822;user@example.test' });
  expect(r.code).toBe(250);
  expect(r.text).toBe('2.7.0 Ok, rejected by policy, delivery status notification sent');
  expect(forward.received).toHaveLength(0);
  expect(notify.received).toHaveLength(before + 1);
  const dsn = notify.received[notify.received.length - 1];
  expect(dsn.mailFrom).toBe('');
  expect(dsn.recipients.map((x) => x.address)).toEqual(['bob@remote.test']);
  const text = dsn.data.toString('latin1');
  expect(text).toMatch(/^Content-Type: multipart\/report; report-type=delivery-status;/m);
  expect(text).toMatch(/^Final-Recipient: rfc822; user@example.test\r\nOriginal-Recipient: rfc822; user@example.test\r\nAction: failed\r\nStatus: 5\.7\.1$/m);
  expect(text).toContain('Subject: bounce me one');
  expect(text).not.toContain('the content');
  expect(logs.find((l) => l.msg === 'message' && l.queueId === 'Q1')).toMatchObject({ verdict: 'bounce', reason: 'LOOP_GUARD_TRACE_SEEN' });
});

it('sends no second DSN for a Postfix retry of the same message', async () => {
  expect((await send(message('retry'), { ident: 'Q2' })).code).toBe(250);
  const after = notify.received.length;
  expect((await send(message('retry'), { ident: 'Q2' })).code).toBe(250);
  expect(notify.received).toHaveLength(after);
  expect(logs.some((l) => l.queueId === 'Q2' && String(l.msg).startsWith('a retry of a message settled before'))).toBe(true);
});

it('sends no DSN to the null sender, nor for NOTIFY=NEVER, and drops the message', async () => {
  const before = notify.received.length;
  const nul = await send(message('null'), { from: '', ident: 'Q3' });
  expect(nul).toMatchObject({ code: 250, text: '2.7.0 Ok, rejected by policy, no notification (the null sender)' });
  const never = await send(message('never'), { ident: 'Q4', rcptArgs: ' NOTIFY=NEVER' });
  expect(never).toMatchObject({ code: 250, text: '2.7.0 Ok, rejected by policy, no notification (NOTIFY=NEVER)' });
  expect(notify.received).toHaveLength(before);
  expect(forward.received).toHaveLength(0);
});

it('tempfails while the notify target is down, and the retry then sends exactly one DSN', async () => {
  const down = await startSink();
  await down.close();
  const working = ctx;
  ctx = context(down.port);
  try {
    const r = await send(message('down'), { ident: 'Q5' });
    expect(r.code).toBe(451);
    expect(r.text).toMatch(/^4\.3\.0 .*delivery status notification could not be sent/);
    expect(logs.some((l) => l.queueId === 'Q5' && l.level === 50 && String(l.msg).startsWith('cannot send the DSN through the notify target'))).toBe(true);
  } finally {
    ctx = working;
  }
  const before = notify.received.length;
  expect((await send(message('down'), { ident: 'Q5' })).code).toBe(250);
  expect((await send(message('down'), { ident: 'Q5' })).code).toBe(250);
  expect(notify.received).toHaveLength(before + 1);
});

it('drops the message with an error log line when the notify target refuses the DSN for good, never a 5xx that makes Postfix bounce the body', async () => {
  notify.behaviour = { refuseRcpt: { 'bob@remote.test': [550, '5.1.1 no such user'] } };
  try {
    const r = await send(message('refused'), { ident: 'Q6' });
    expect(r.code).toBe(250);
    expect(r.text).toBe('2.7.0 Ok, rejected by policy, no notification (the DSN was refused)');
  } finally {
    notify.behaviour = {};
  }
  expect(forward.received).toHaveLength(0);
  expect(logs.some((l) => l.queueId === 'Q6' && l.level === 50 && String(l.msg).startsWith('the notify target refused the DSN for good'))).toBe(true);
});

it('sends no DSN when no recipient asked NOTIFY=FAILURE (RFC 3461 4.1), e.g. NOTIFY=SUCCESS', async () => {
  const before = notify.received.length;
  const r = await send(message('success-only'), { ident: 'Q8', rcptArgs: ' NOTIFY=SUCCESS,DELAY' });
  expect(r).toMatchObject({ code: 250, text: '2.7.0 Ok, rejected by policy, no notification (no NOTIFY=FAILURE)' });
  expect(notify.received).toHaveLength(before);
});

it('sends no DSN for a banned file to a sender that did not authenticate on an inbound bank (no backscatter)', async () => {
  const before = notify.received.length;
  bounceCategory = 'banned';
  try {
    const r = await send(message('banned-forged'), { ident: 'Q9' });
    expect(r).toMatchObject({ code: 250, text: '2.7.0 Ok, rejected by policy, no notification (sender not authenticated)' });
  } finally {
    bounceCategory = undefined;
  }
  expect(notify.received).toHaveLength(before);
  expect(forward.received).toHaveLength(0);
});

it('keeps the earlier bounce for a Postfix retry even when the checks would now pass: no delivery after a DSN', async () => {
  expect((await send(message('sticky'), { ident: 'Q7' })).code).toBe(250);
  const dsns = notify.received.length;
  checksPass = true;
  try {
    const r = await send(message('sticky'), { ident: 'Q7' });
    expect(r).toMatchObject({ code: 250, text: '2.7.0 Ok, rejected by policy, delivery status notification sent' });
  } finally {
    checksPass = false;
  }
  expect(forward.received).toHaveLength(0);
  expect(notify.received).toHaveLength(dsns);
  expect(logs.some((l) => l.queueId === 'Q7' && String(l.msg).startsWith('a retry of a message settled before'))).toBe(true);
});

it('sends no DSN about an automatic message (Auto-Submitted, MAILER-DAEMON), so two systems cannot loop', async () => {
  const before = notify.received.length;
  const auto = await send(`Auto-Submitted: auto-replied\r\n${message('auto')}`, { ident: 'Q10' });
  expect(auto).toMatchObject({ code: 250, text: '2.7.0 Ok, rejected by policy, no notification (automatic message)' });
  const daemon = await send(message('daemon'), { ident: 'Q11', from: 'MAILER-DAEMON@remote.test' });
  expect(daemon).toMatchObject({ code: 250, text: '2.7.0 Ok, rejected by policy, no notification (automatic message)' });
  expect(notify.received).toHaveLength(before);
  expect(forward.received).toHaveLength(0);
});

it('through the milter: sends the DSN, answers discard, and keeps no outcome for a retry that cannot come (a new queue id each time)', async () => {
  const milter = await startMilterListener({ address: '127.0.0.1', port: 0, bank: 'default', protocol: 'milter', maxConnections: 10 }, () => ctx);
  try {
    const settledBefore = (await store.scan('settled:')).length;
    const before = notify.received.length;
    const c = await MilterClient.connect(milter.port);
    await c.negotiate();
    const p = messagePackets({
      from: 'bob@remote.test',
      to: ['user@example.test'],
      macros: { E: { i: 'MB1' } },
      header: [['Subject', ' bounce me milter']],
      body: 'the content\r\n',
    });
    c.send(...p.envelope, ...p.content, p.eom);
    expect((await c.next()).code).toBe('c');
    const replies = await c.untilFinal();
    c.close();
    expect(replies.map((r) => r.code)).toEqual(['d']);
    expect(notify.received).toHaveLength(before + 1);
    expect(notify.received.at(-1)?.recipients.map((x) => x.address)).toEqual(['bob@remote.test']);
    expect(await store.scan('settled:')).toHaveLength(settledBefore);
    // The content-filter path keeps one, for Postfix's retry of the same queue file.
    expect((await send(message('kept'), { ident: 'Q9' })).code).toBe(250);
    expect(await store.scan('settled:')).toHaveLength(settledBefore + 1);
  } finally {
    await milter.close();
  }
});
