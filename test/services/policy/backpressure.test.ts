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
import { PolicyClient, requestText, startPolicy, tempSqliteStore, writePolicyConfig } from '../../helpers/policy';

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
