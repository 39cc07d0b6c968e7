/**
 * Notices over real sockets: a listener whose bank's check stage blocks a message with a
 * category's destiny (the subject says which), a sink as the forward target and another as
 * the notify target. Admin notices go to the category's addresses, DKIM-signed by postseal
 * (verified by Mail::DKIM and dkimpy against the loopback DNS server); recipient notices to
 * every recipient, undisclosed; sender notices only to an authenticated sender and never for
 * a virus; a crafted Subject cannot add a header field; a notify target that is down is a
 * 451, and the retry sends each notice once; the hourly limits hold; the quarantine id is in
 * the notice of a held message.
 */
import { createPrivateKey } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseNetworks } from '../../src/config/networks';
import { SPF_RESULT } from '../../src/lib/authentication-results';
import { createLogger } from '../../src/lib/log';
import { loadTemplates } from '../../src/lib/notice-templates';
import { startListener, type Listener } from '../../src/listener/listener';
import type { SessionContext } from '../../src/listener/session';
import { reportSigner } from '../../src/notify/sign';
import { destinyDecision, type Destiny } from '../../src/pipeline/destiny';
import { createPipeline } from '../../src/pipeline/runner';
import { defineStage, type NoticeCategory } from '../../src/pipeline/stage';
import { Quarantine } from '../../src/quarantine/quarantine';
import { DownstreamPool } from '../../src/reinject/pool';
import { replies } from '../../src/smtp/replies';
import { openSqliteStore } from '../../src/store/sqlite';
import type { Store } from '../../src/store/store';
import { loadTestBank } from '../helpers/banks';
import { dkimpy, mailDkim, rsaKey, zoneFor } from '../helpers/dkim-verifiers';
import { startDnsServer, type DnsServer } from '../helpers/dns-server';
import { startSink, type Sink } from '../helpers/sink';
import { TestClient } from '../helpers/smtp-client';
import { testStageDeps } from '../helpers/stage-run';

// Subject "block <category> <destiny> [spf]": the finding's rule blocks with that category's destiny; "spf" makes SPF pass for the sender.
const blocker = defineStage<unknown, 'LOOP_GUARD_TRACE_SEEN'>({
  id: 'loop-guard',
  phase: 'check',
  findings: ['LOOP_GUARD_TRACE_SEEN'],
  rules: {
    LOOP_GUARD_TRACE_SEEN: (_s, _b, f) => {
      const [category, destiny] = (f.detail ?? '').split(' ') as [NoticeCategory, Destiny];
      return destinyDecision(destiny, replies.contentRejected, [], category);
    },
  },
  create: () => ({
    id: 'loop-guard',
    run: async (tx) => {
      const subject = tx.message.get('subject')[0]?.raw.toString('latin1') ?? '';
      const m = /block (\S+) (\S+)( spf)?/.exec(subject);
      if (!m) return { findings: [] };
      const sender = tx.envelope.mailFrom;
      return {
        findings: [{ code: 'LOOP_GUARD_TRACE_SEEN', detail: `${m[1]} ${m[2]}` }],
        results: m[3] ? [SPF_RESULT.entry({ result: 'pass', domain: sender.slice(sender.indexOf('@') + 1) })] : [],
      };
    },
  }),
});

const logs: Record<string, unknown>[] = [];
const log = createLogger('info', { write: (line: string) => void logs.push(JSON.parse(line)) });
const NOTICES = {
  virusAdmin: ['virus-admin@example.com'],
  bannedAdmin: ['banned-admin@example.com', 'second-admin@example.com'],
  warnBannedRecipient: true,
  warnVirusRecipient: false,
  warnBannedSender: true,
};
const key = { domain: rsaKey.domain, selector: rsaKey.selector, algorithm: rsaKey.algorithm, privateKey: createPrivateKey(readFileSync(rsaKey.file)), domainKeys: 'off' as const };
let forward: Sink;
let notify: Sink;
let store: Store;
let dns: DnsServer;
let listener: Listener;
let ctx: SessionContext;
let quarantine: Quarantine;
const limits = { maxDsnPerHour: 1000, maxPerSenderDomainPerHour: 1000, maxNoticesPerHour: 1000 };

function context(notifyPort: number, overrides: { limits?: typeof limits } = {}): SessionContext {
  const bank = loadTestBank({ stages: ['loop-guard'], forward: { host: '127.0.0.1', port: forward.port }, notify: { host: '127.0.0.1', port: notifyPort }, notices: NOTICES });
  const spool = { dir: mkdtempSync(path.join(tmpdir(), 'notices-spool-')), memoryThresholdBytes: 65536 };
  return {
    bank,
    hostname: 'filter.test',
    log,
    trustedNetworks: parseNetworks(['127.0.0.0/8']),
    pool: new DownstreamPool(bank.forward, 'filter.test', log),
    pipeline: createPipeline('default', bank, [blocker], { ...testStageDeps({ server: '127.0.0.1:9' }), spool }),
    spool,
    shutdownGraceMs: 1000,
    quarantine,
    bounce: {
      pool: new DownstreamPool(bank.notify!, 'filter.test', log),
      store,
      hostname: 'filter.test',
      log,
      from: 'postmaster@example.com',
      sign: reportSigner([key], () => new Date()),
      limits: overrides.limits ?? limits,
      templates: loadTemplates(''),
    },
  };
}

beforeAll(async () => {
  dns = await startDnsServer(zoneFor([rsaKey]));
  forward = await startSink();
  notify = await startSink();
  store = openSqliteStore({ file: path.join(mkdtempSync(path.join(tmpdir(), 'notices-db-')), 's.db'), keyPrefix: 'ps:', busyTimeoutMs: 1000 });
  quarantine = new Quarantine(
    { dir: mkdtempSync(path.join(tmpdir(), 'notices-q-')), maxMessageSizeBytes: 1048576, maxTotalBytes: 0, minFreeBytes: 0, maxAgeDays: 1, sweepIntervalMs: 3600000 },
    store,
    log,
  );
  ctx = context(notify.port);
  listener = await startListener({ address: '127.0.0.1', port: 0, bank: 'default', protocol: 'smtp', maxConnections: 10 }, () => ctx);
});
afterAll(async () => {
  await listener.close();
  await store.close();
  await forward.close();
  await notify.close();
  await dns.close();
});

const message = (subject: string, id: string) =>
  `From: <bob@remote.test>\r\nTo: <user@example.test>\r\nSubject: ${subject}\r\nMessage-ID: <${id}@remote.test>\r\n\r\nthe content\r\n`;

async function send(data: string, opts: { from?: string; ident: string; to?: string[] }) {
  const c = await TestClient.connect(listener.port);
  try {
    await c.cmd('EHLO relay.test');
    await c.cmd(`XFORWARD ADDR=198.51.100.7 NAME=relay.remote.test IDENT=${opts.ident}`);
    await c.cmd(`MAIL FROM:<${opts.from ?? 'bob@remote.test'}>`);
    for (const to of opts.to ?? ['user@example.test']) await c.cmd(`RCPT TO:<${to}>`);
    await c.cmd('DATA');
    return await c.cmd(`${data}.`);
  } finally {
    await c.quit();
  }
}

async function resetNoticeCounts(): Promise<void> {
  for (const key of await store.scan('notify-rate:')) await store.delete(key);
}

/** The notices naming this queue id (admin: "Postfix queue id:", recipient and sender: "Reference:"). */
const noticesAbout = (queueId: string) => notify.received.filter((r) => new RegExp(`^(Postfix queue id|Reference):\\s+${queueId}\\b`, 'm').test(r.data.toString('latin1')));
const audience = (r: { data: Buffer }) => /^X-Postseal-Notice: (\w+)/m.exec(r.data.toString('latin1'))?.[1];

it('sends a virus admin notice, DKIM-signed for the notify.from domain, naming the finding, the quarantine id and the queue id; both verifiers pass', async () => {
  const r = await send(message('block virus quarantine', 'v1'), { ident: 'N1' });
  expect(r.code).toBe(250);
  const id = /held in quarantine as (\w+)/.exec(r.text)?.[1];
  expect(id).toBeDefined();
  const sent = noticesAbout('N1');
  expect(sent).toHaveLength(1);
  expect(sent[0].mailFrom).toBe('postmaster@example.com');
  expect(sent[0].recipients.map((x) => x.address)).toEqual(['virus-admin@example.com']);
  const text = sent[0].data.toString('latin1');
  expect(text).toMatch(/^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=example\.com;/);
  expect(text).toMatch(/^Subject: \[postseal\] virus blocked from bob@remote\.test\r$/m);
  expect(text).toContain(`Quarantine id:  ${id}`);
  expect(text).toContain('What was found: LOOP_GUARD_TRACE_SEEN (virus quarantine)');
  expect(text).toContain('Client:              relay.remote.test [198.51.100.7]');
  const [perl, py] = await Promise.all([mailDkim(sent[0].data, dns.server), dkimpy(sent[0].data, dns.server)]);
  expect(perl.map((x) => x.result)).toEqual(['pass']);
  expect(py.map((x) => x.result)).toEqual(['pass']);
  expect(logs.find((l) => l.msg === 'admin notice sent' && l.queueId === 'N1')).toMatchObject({ session: expect.any(String), to: ['virus-admin@example.com'], dkim: 'signed' });
  // No sender notice for a virus, whatever the settings.
  expect(sent.map(audience)).toEqual(['admin']);
});

it('tells the banned admins, every recipient undisclosed, and an authenticated sender from <>; nothing goes downstream', async () => {
  const r = await send(message('block banned discard spf', 'b1'), { ident: 'N2', to: ['user@example.test', 'other@example.test'] });
  expect(r.code).toBe(250);
  const sent = noticesAbout('N2');
  expect(sent.map(audience)).toEqual(['admin', 'recipient', 'sender']);
  expect(sent[0].recipients.map((x) => x.address)).toEqual(['banned-admin@example.com', 'second-admin@example.com']);
  expect(sent[1].recipients.map((x) => x.address)).toEqual(['user@example.test', 'other@example.test']);
  expect(sent[1].data.toString('latin1')).toMatch(/^To: undisclosed-recipients:;\r$/m);
  expect(sent[2].mailFrom).toBe('');
  expect(sent[2].recipients.map((x) => x.address)).toEqual(['bob@remote.test']);
  expect(sent[2].data.toString('latin1')).toMatch(/^Subject: Your message was not delivered \(banned\)\r$/m);
  expect(forward.received).toHaveLength(0);
});

it('sends no sender notice to a sender that is not authenticated, and says so in the log', async () => {
  expect((await send(message('block banned discard', 'b2'), { ident: 'N3' })).code).toBe(250);
  expect(noticesAbout('N3').map(audience)).toEqual(['admin', 'recipient']);
  expect(logs.some((l) => l.queueId === 'N3' && String(l.msg).startsWith('no sender notice: the sender is not authenticated'))).toBe(true);
});

it('sends no sender notice about mailing-list or bulk mail (RFC 3834), even from an authenticated sender', async () => {
  const list = message('block banned discard spf', 'l1').replace('\r\n\r\n', '\r\nList-Id: Users <users.lists.remote.test>\r\n\r\n');
  const bulk = message('block banned discard spf', 'l2').replace('\r\n\r\n', '\r\nPrecedence: Bulk\r\n\r\n');
  expect((await send(list, { ident: 'NL1', from: 'users-bounces@remote.test' })).code).toBe(250);
  expect((await send(bulk, { ident: 'NL2' })).code).toBe(250);
  expect(noticesAbout('NL1').map(audience)).toEqual(['admin', 'recipient']);
  expect(noticesAbout('NL2').map(audience)).toEqual(['admin', 'recipient']);
  expect(logs.find((l) => l.queueId === 'NL1' && String(l.msg).startsWith('no sender notice:'))?.msg).toBe(
    'no sender notice: the message is from a mailing list (List-Id) (RFC 3834)',
  );
  expect(logs.find((l) => l.queueId === 'NL2' && String(l.msg).startsWith('no sender notice:'))?.msg).toBe(
    'no sender notice: the message is bulk mail (Precedence: bulk) (RFC 3834)',
  );
});

it('sends the notices of a rejected message before its 5xx', async () => {
  const r = await send(message('block virus reject', 'v2'), { ident: 'N4' });
  expect(r.code).toBe(550);
  expect(noticesAbout('N4').map(audience)).toEqual(['admin']);
});

it('keeps a crafted Subject on one line: it cannot add a header field to the notice', async () => {
  const r = await send(message('block virus discard\r\n Bcc: <victim@example.org>', 'v3'), { ident: 'N5' });
  expect(r.code).toBe(250);
  const text = noticesAbout('N5')[0].data.toString('latin1');
  const header = text.slice(0, text.indexOf('\r\n\r\n'));
  expect(header).not.toMatch(/^Bcc:/im);
  expect(text).toMatch(/^Subject:\s+block virus discard\s+Bcc: <victim@example\.org>\r$/m);
});

it('tempfails while the notify target is down, holds the message once, and the retry sends each notice once', async () => {
  const down = await startSink();
  await down.close();
  const working = ctx;
  ctx = context(down.port);
  let first: string | undefined;
  try {
    const r = await send(message('block banned quarantine spf', 'b3'), { ident: 'N6' });
    expect(r.code).toBe(451);
    expect(r.text).toMatch(/^4\.3\.0 /);
    expect(logs.some((l) => l.queueId === 'N6' && l.level === 50 && String(l.msg).startsWith('cannot send a notice through the notify target'))).toBe(true);
    first = logs.find((l) => l.queueId === 'N6' && l.msg === 'message held in quarantine')?.quarantineId as string;
  } finally {
    ctx = working;
  }
  expect((await send(message('block banned quarantine spf', 'b3'), { ident: 'N6' })).code).toBe(250);
  expect((await send(message('block banned quarantine spf', 'b3'), { ident: 'N6' })).code).toBe(250);
  expect(noticesAbout('N6').map(audience)).toEqual(['admin', 'recipient', 'sender']);
  expect(logs.filter((l) => l.queueId === 'N6' && String(l.msg).startsWith('a retry of a message settled before')).map((l) => l.quarantineId)).toEqual([first, first]);
  expect(await quarantine.list({})).toHaveLength(logs.filter((l) => l.msg === 'message held in quarantine').length);
});

it('sends no notice over notify.maxNoticesPerHour and handles the message all the same', async () => {
  const working = ctx;
  ctx = context(notify.port, { limits: { ...limits, maxNoticesPerHour: 1 } });
  await resetNoticeCounts();
  try {
    expect((await send(message('block virus discard', 'v4'), { ident: 'N7' })).code).toBe(250);
    expect((await send(message('block virus discard', 'v5'), { ident: 'N8' })).code).toBe(250);
  } finally {
    ctx = working;
    await resetNoticeCounts();
  }
  expect(noticesAbout('N7')).toHaveLength(1);
  expect(noticesAbout('N8')).toHaveLength(0);
  expect(logs.find((l) => l.queueId === 'N8' && String(l.msg).startsWith('notice not sent: over notify.maxNoticesPerHour (1) for admin notices'))).toBeDefined();
});

it('counts each audience on its own: a flood that uses up the admin notices does not silence an authenticated sender', async () => {
  const working = ctx;
  ctx = context(notify.port, { limits: { ...limits, maxNoticesPerHour: 1 } });
  await resetNoticeCounts();
  try {
    // Anyone can trigger admin notices (viruses from forged senders): the first uses up the hour.
    expect((await send(message('block virus discard', 'f1'), { ident: 'NF1' })).code).toBe(250);
    expect((await send(message('block banned discard spf', 'f2'), { ident: 'NF2' })).code).toBe(250);
  } finally {
    ctx = working;
    await resetNoticeCounts();
  }
  expect(noticesAbout('NF1').map(audience)).toEqual(['admin']);
  expect(noticesAbout('NF2').map(audience)).toEqual(['recipient', 'sender']);
  expect(logs.find((l) => l.queueId === 'NF2' && l.level === 40)).toMatchObject({ audience: 'admin', limit: 'notify.maxNoticesPerHour (1) for admin notices' });
});

// A DSN goes to whatever sender a message claims; a sender notice only to an authenticated one.
it('counts sender notices to a domain apart from DSNs to it: bounces of forged senders of that domain do not silence its authenticated sender', async () => {
  const working = ctx;
  ctx = context(notify.port, { limits: { ...limits, maxPerSenderDomainPerHour: 1 } });
  await resetNoticeCounts();
  try {
    expect((await send(message('block spam bounce', 'd1'), { ident: 'ND1', from: 'forged@domain.test' })).code).toBe(250);
    expect((await send(message('block banned discard spf', 'd2'), { ident: 'ND2', from: 'bob@domain.test' })).code).toBe(250);
  } finally {
    ctx = working;
    await resetNoticeCounts();
  }
  expect(notify.received.filter((r) => r.recipients.some((a) => a.address === 'forged@domain.test'))).toHaveLength(1);
  expect(noticesAbout('ND2').map(audience)).toContain('sender');
});

it('holds a bounced message in quarantine when the notify target refuses its DSN for good (no 5xx that bounces the body)', async () => {
  notify.behaviour = { refuseRcpt: { 'z@refused.test': [550, '5.1.1 no such user'] } };
  try {
    const r = await send(message('block spam bounce', 'r1'), { ident: 'N13', from: 'z@refused.test' });
    expect(r.code).toBe(250);
    expect(r.text).toMatch(/^2\.7\.0 Ok, held in quarantine as [a-f0-9]+$/);
  } finally {
    notify.behaviour = {};
  }
  expect(logs.some((l) => l.queueId === 'N13' && l.level === 50 && String(l.msg).includes('held in quarantine instead'))).toBe(true);
});

it('counts only accepted notices against the hourly limit: a 451 during a notify outage uses up nothing', async () => {
  const down = await startSink();
  await down.close();
  const working = ctx;
  await resetNoticeCounts();
  try {
    ctx = context(down.port, { limits: { ...limits, maxNoticesPerHour: 1 } });
    expect((await send(message('block virus discard', 'o1'), { ident: 'N11' })).code).toBe(451);
    expect((await send(message('block virus discard', 'o1'), { ident: 'N11' })).code).toBe(451);
    ctx = context(notify.port, { limits: { ...limits, maxNoticesPerHour: 1 } });
    expect((await send(message('block virus discard', 'o2'), { ident: 'N12' })).code).toBe(250);
  } finally {
    ctx = working;
    await resetNoticeCounts();
  }
  expect(noticesAbout('N12')).toHaveLength(1);
});

it('sends no DSN over notify.maxPerSenderDomainPerHour: the bounced message is held in quarantine instead, with a warning', async () => {
  const working = ctx;
  ctx = context(notify.port, { limits: { ...limits, maxPerSenderDomainPerHour: 1 } });
  try {
    expect((await send(message('block spam bounce', 's1'), { ident: 'N9', from: 'x@flood.test' })).text).toBe('2.7.0 Ok, rejected by policy, delivery status notification sent');
    expect((await send(message('block spam bounce', 's2'), { ident: 'N10', from: 'y@flood.test' })).text).toMatch(/^2\.7\.0 Ok, held in quarantine as [a-f0-9]+$/);
  } finally {
    ctx = working;
  }
  const dsns = notify.received.filter((r) => r.mailFrom === '' && r.recipients.some((x) => x.address.endsWith('@flood.test')));
  expect(dsns).toHaveLength(1);
  expect(dsns[0].data.toString('latin1')).toMatch(/^From: Mail Delivery System <MAILER-DAEMON@example\.com>\r$/m);
  expect(dsns[0].data.toString('latin1')).toMatch(/^DKIM-Signature: .* d=example\.com;/m);
  expect(logs.find((l) => l.queueId === 'N10' && l.level === 40)).toMatchObject({ limit: 'notify.maxPerSenderDomainPerHour (1) for flood.test' });
});
