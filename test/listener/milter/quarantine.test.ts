/**
 * A quarantine verdict on a milter listener: postseal holds the message as received (the
 * bytes rebuilt from the MTA's header and body packets, as Postfix would queue them) and
 * answers SMFIR_DISCARD, so Postfix keeps no copy; the log line names the quarantine id.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { inboundStages } from '../../helpers/auth';
import { startDnsServer, type DnsServer } from '../../helpers/dns-server';
import { MilterClient, messagePackets } from '../../helpers/milter-client';
import { startHarness, type Harness } from '../../helpers/postseal';
import { waitFor } from '../../e2e/wait';

// Twelve author domains: the dmarc stage's DMARC_TOO_MANY_AUTHORS, which onReject decides.
const authors = Array.from({ length: 12 }, (_, i) => `u@q${i}.example`).join(', ');

let dns: DnsServer;
let h: Harness;
let dir: string;
beforeAll(async () => {
  dns = await startDnsServer({});
  dir = path.join(mkdtempSync(path.join(tmpdir(), 'milter-q-')), 'held');
  h = await startHarness({
    forwardPort: 9,
    banks: { default: { stages: inboundStages, dmarc: { onReject: 'quarantine' } } },
    main: { listeners: [{ port: 0, bank: 'default', protocol: 'milter' }], dns: { servers: [dns.server], timeoutMs: 300, retries: 0 }, quarantine: { dir } },
  });
});
afterAll(async () => {
  await h?.close();
  await dns?.close();
});

it('holds a quarantined message as received and tells Postfix to discard its copy', async () => {
  const c = await MilterClient.connect(h.app.listeners[0].port);
  await c.negotiate();
  const p = messagePackets({
    from: 'a@remote.test',
    to: ['bob@example.net'],
    macros: { E: { i: 'MQ1' } },
    header: [
      ['From', ` ${authors}`],
      ['Subject', ' hold\n\tfolded'],
    ],
    body: 'body\r\n',
  });
  c.send(...p.envelope, ...p.content, p.eom);
  expect((await c.next()).code).toBe('c');
  const replies = await c.untilFinal();
  c.close();
  expect(replies.map((r) => r.code)).toEqual(['d']);
  const line = await waitFor('the log line', async () => h.logs.find((l) => l.msg === 'message' && l.queueId === 'MQ1'));
  expect(line).toMatchObject({ verdict: 'quarantine', protocol: 'milter' });
  expect(readFileSync(path.join(dir, `${line.quarantineId}.eml`), 'latin1')).toBe(`From: ${authors}\r\nSubject: hold\r\n\tfolded\r\n\r\nbody\r\n`);
});
