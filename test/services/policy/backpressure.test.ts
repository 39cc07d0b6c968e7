/**
 * The policy service's limits on one connection over a real socket: how much of a client's
 * pipelined input is parsed ahead of the answers it takes, and that the requests it sent
 * before half-closing are still answered in order.
 */
import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { PolicyService } from '../../../src/services/policy';
import type { Store } from '../../../src/store/store';
import { startDnsServer } from '../../helpers/dns-server';
import { PolicyClient, rcptRequest, requestText, startPolicy, tempSqliteStore, writePolicyConfig } from '../../helpers/policy';

jest.setTimeout(30000);

let store: Store;
let service: PolicyService;
const clients: PolicyClient[] = [];
beforeEach(async () => {
  store = tempSqliteStore();
  service = await startPolicy(writePolicyConfig({ spf: { enabled: false } }), store);
});
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await service.close();
  await store.close();
});

async function connect(): Promise<PolicyClient> {
  const c = await PolicyClient.connect(service.port);
  clients.push(c);
  return c;
}

it('parses no more than 16 requests ahead of the answers a client that does not read has taken', async () => {
  // A unix socket: its kernel buffers (about 200 KB) fill with answers at once, where TCP's
  // loopback buffers take megabytes first.
  const socketPath = path.join(mkdtempSync(path.join(tmpdir(), 'postseal-policy-bp-')), 'policy');
  const unix = await startPolicy(writePolicyConfig({ spf: { enabled: false }, socket: socketPath }), store);
  const s = net.connect(socketPath);
  s.pause();
  s.on('error', () => undefined);
  // The smallest requests there are: one 64 KB read holds 16,384 of them. Parsed at once, each
  // connection held 3.3 MB of them (500 connections: 1.6 GB) until its idle timeout.
  s.write('a=\n\n'.repeat(16384 * 8));
  await new Promise((r) => setTimeout(r, 1500));
  try {
    expect(unix.bufferedAnswerBytes).toBeGreaterThan(0);
    expect(unix.queuedRequests).toBeLessThanOrEqual(16);
  } finally {
    s.destroy();
    await unix.close();
  }
});

it('answers every whole request a client sent before half-closing, in order, then closes', async () => {
  const c = await connect();
  const n = 40000;
  let text = '';
  for (let i = 0; i < n; i++) text += requestText({ request: 'other', n: String(i) });
  const answers: Promise<string>[] = [];
  for (let i = 0; i < n; i++) answers.push(c.next());
  c.socket.end(text);
  expect((await Promise.all(answers)).every((a) => a === 'DUNNO')).toBe(true);
  await c.closed;
});

it('gives a UTF-8 sender (SMTPUTF8) back in Received-SPF as the same bytes, not encoded twice, and checks an IDN sender domain under its own name', async () => {
  const dns = await startDnsServer({ 'sender.example': { TXT: ['v=spf1 ip4:192.0.2.0/24 -all'] }, 'xn--bcher-kva.example': { TXT: ['v=spf1 -all'] } });
  const spf = await startPolicy(writePolicyConfig({ greylist: { enabled: false } }), store, { dnsServer: dns.server });
  const s = net.connect(spf.port, '127.0.0.1');
  try {
    const got: Buffer[] = [];
    const answered = new Promise<Buffer>((resolve) =>
      s.on('data', (d: Buffer) => {
        got.push(d);
        if (Buffer.concat(got).includes('\n\n')) resolve(Buffer.concat(got));
      }),
    );
    s.write(Buffer.from(requestText({ ...rcptRequest(), sender: 'jösé@sender.example' }), 'utf8'));
    // Read as latin1 and written as UTF-8, "ö" (C3 B6) went out as C3 83 C2 B6.
    expect((await answered).toString('utf8')).toContain('envelope-from="jösé@sender.example"');
    // An IDN sender domain is looked up as its A-label: its -all refuses the mail (it was
    // looked up garbled, found nothing, and let the mail through as SPF none).
    got.length = 0;
    const refused = new Promise<Buffer>((resolve) =>
      s.on('data', () => {
        if (Buffer.concat(got).includes('\n\n')) resolve(Buffer.concat(got));
      }),
    );
    s.write(Buffer.from(requestText({ ...rcptRequest(), instance: 'idn', sender: 'x@bücher.example' }), 'utf8'));
    expect((await refused).toString('utf8')).toMatch(/^action=550 5\.7\.23 /);
  } finally {
    s.destroy();
    await spf.close();
    await dns.close();
  }
});

it("answers another connection while one client's long pipelined backlog is being answered", async () => {
  const flood = await connect();
  const other = await connect();
  const n = 16384 * 4;
  let done = 0;
  const all: Promise<string>[] = [];
  for (let i = 0; i < n; i++) {
    all.push(
      flood.next().then((a) => {
        done++;
        return a;
      }),
    );
  }
  flood.write('a=\n\n'.repeat(n));
  await new Promise((r) => setTimeout(r, 20));
  // Decided without I/O, the flood's answers chained on microtasks and held the other
  // connection (and every other socket of the process) until the whole read was answered.
  expect(await other.ask({ request: 'other' })).toBe('DUNNO');
  expect(done).toBeLessThan(n);
  await Promise.all(all);
});
