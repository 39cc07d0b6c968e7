import { writeFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { startHarness, type Harness } from '../helpers/postseal';
import { startSink, type Sink } from '../helpers/sink';
import { TestClient } from '../helpers/smtp-client';
import { loadConfig } from '../../src/setup';

const msg = 'From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n';

describe('banks by client network and sender (bankRules)', () => {
  let down: Sink;
  let mynets: Sink;
  let senders: Sink;
  let h: Harness;

  beforeAll(async () => {
    [down, mynets, senders] = await Promise.all([startSink(), startSink(), startSink()]);
    h = await startHarness({
      forwardPort: down.port,
      banks: { MYNETS: { forward: { port: mynets.port } }, BULK: { forward: { port: senders.port }, maxRecipients: 1 } },
      main: {
        bankRules: {
          // 127.0.0.0/8 as amavisd's @mynetworks has it: Postfix itself, on loopback, must not match.
          clientNetworks: [{ networks: ['198.51.100.0/24', '192.0.2.0/24', '2001:db8::/32', '127.0.0.0/8'], bank: 'MYNETS' }],
          senders: [{ senders: ['news@example.com', '*.lists.example'], bank: 'BULK', listenerBanks: ['default'] }],
        },
      },
    });
  });
  afterAll(async () => {
    await h.close();
    await Promise.all([down.close(), mynets.close(), senders.close()]);
  });

  const messageLines = () => h.logs.filter((l) => l.msg === 'message');

  it('a trusted XFORWARD client address in a listed IPv4 network picks the bank, its forward and its log rule', async () => {
    const c = await TestClient.connect(h.app.portOf('default'));
    const r = await c.send({ from: 'a@example.org', to: ['b@example.net'], data: msg, xforward: 'ADDR=192.0.2.7' });
    await c.quit();
    expect(r.final?.code).toBe(250);
    expect(mynets.received.map((m) => m.mailFrom)).toEqual(['a@example.org']);
    expect(down.received).toHaveLength(0);
    expect(messageLines().at(-1)).toMatchObject({ bank: 'MYNETS', bankRule: 'clientNetworks[0] 192.0.2.0/24', client: '192.0.2.7' });
  });

  it('an IPv6 client address (Postfix writes IPv6:) matches an IPv6 network', async () => {
    const c = await TestClient.connect(h.app.portOf('default'));
    const r = await c.send({ from: 'v6@example.org', to: ['b@example.net'], data: msg, xforward: 'ADDR=IPv6:2001:db8::25' });
    await c.quit();
    expect(r.final?.code).toBe(250);
    expect(mynets.received.at(-1)?.mailFrom).toBe('v6@example.org');
    expect(messageLines().at(-1)).toMatchObject({ bank: 'MYNETS', bankRule: 'clientNetworks[0] 2001:db8::/32' });
  });

  it('without XFORWARD, the trusted loopback peer (Postfix) is no client: 127.0.0.0/8 in a rule does not take the mail', async () => {
    const before = mynets.received.length;
    const c = await TestClient.connect(h.app.portOf('default'));
    const r = await c.send({ from: 'noxf@example.org', to: ['b@example.net'], data: msg });
    await c.quit();
    expect(r.final?.code).toBe(250);
    expect(mynets.received.length).toBe(before);
    expect(messageLines().at(-1)).toMatchObject({ bank: 'default' });
  });

  it('a client outside every network stays on the port bank', async () => {
    const c = await TestClient.connect(h.app.portOf('default'));
    const r = await c.send({ from: 'out@example.org', to: ['b@example.net'], data: msg, xforward: 'ADDR=203.0.113.9' });
    await c.quit();
    expect(r.final?.code).toBe(250);
    expect(down.received.at(-1)?.mailFrom).toBe('out@example.org');
    expect(messageLines().at(-1)).toMatchObject({ bank: 'default', bankRule: expect.stringMatching(/^listener port /) });
  });

  it('a sender rule is checked after the network rules and wins over them; its bank limits apply from RCPT on', async () => {
    const c = await TestClient.connect(h.app.portOf('default'));
    const r = await c.send({ from: 'owner@x.lists.example', to: ['b@example.net', 'c@example.net'], data: msg, xforward: 'ADDR=192.0.2.7' });
    await c.quit();
    expect(r.final?.code).toBe(250);
    // BULK allows one recipient: the second RCPT is refused by the chosen bank, not the port's.
    expect(r.rcpts.map((x) => x.code)).toEqual([250, 452]);
    expect(senders.received.at(-1)?.mailFrom).toBe('owner@x.lists.example');
    expect(messageLines().at(-1)).toMatchObject({ bank: 'BULK', bankRule: 'senders[0] *.lists.example' });
  });

  it('each transaction of one connection is chosen anew, by address or exact sender', async () => {
    const c = await TestClient.connect(h.app.portOf('default'));
    const a = await c.send({ from: 'NEWS@Example.com', to: ['b@example.net'], data: msg });
    const b = await c.send({ from: 'plain@example.com', to: ['b@example.net'], data: msg });
    await c.quit();
    expect([a.final?.code, b.final?.code]).toEqual([250, 250]);
    expect(senders.received.at(-1)?.mailFrom).toBe('NEWS@Example.com');
    expect(down.received.at(-1)?.mailFrom).toBe('plain@example.com');
    expect(
      messageLines()
        .slice(-2)
        .map((l) => l.bank),
    ).toEqual(['BULK', 'default']);
  });
});

describe('bankRules with an untrusted XFORWARD', () => {
  it('the peer address decides, not the XFORWARD ADDR', async () => {
    const [down, local] = await Promise.all([startSink(), startSink()]);
    const h = await startHarness({
      forwardPort: down.port,
      banks: { LOCAL: { forward: { port: local.port } }, MYNETS: {} },
      main: {
        xforwardTrustedNetworks: ['10.9.9.0/24'],
        bankRules: {
          clientNetworks: [
            { networks: ['192.0.2.0/24'], bank: 'MYNETS' },
            { networks: ['127.0.0.0/8', '::1'], bank: 'LOCAL' },
          ],
        },
      },
    });
    const c = await TestClient.connect(h.app.portOf('default'));
    const r = await c.send({ from: 'a@example.org', to: ['b@example.net'], data: msg, xforward: 'ADDR=192.0.2.7' });
    await c.quit();
    await h.close();
    await Promise.all([down.close(), local.close()]);
    expect(r.final?.code).toBe(250);
    expect(local.received).toHaveLength(1);
    expect(h.logs.find((l) => l.msg === 'message')).toMatchObject({ bank: 'LOCAL', bankRule: 'clientNetworks[1] 127.0.0.0/8' });
  });

  it('a rule limited by listenerBanks leaves other listeners alone', async () => {
    const down = await startSink();
    const other = await startSink();
    const h = await startHarness({
      forwardPort: down.port,
      banks: { NOCHECKS: {}, MYNETS: { forward: { port: other.port } } },
      listeners: [{ bank: 'default' }, { bank: 'NOCHECKS' }],
      main: { bankRules: { clientNetworks: [{ networks: ['127.0.0.0/8'], bank: 'MYNETS', listenerBanks: ['default'] }] } },
    });
    const c = await TestClient.connect(h.app.portOf('NOCHECKS'));
    const r = await c.send({ from: 'a@example.org', to: ['b@example.net'], data: msg });
    await c.quit();
    await h.close();
    await Promise.all([down.close(), other.close()]);
    expect(r.final?.code).toBe(250);
    expect(other.received).toHaveLength(0);
    expect(h.logs.find((l) => l.msg === 'message')).toMatchObject({ bank: 'NOCHECKS' });
  });
});

describe('bankRules in the configuration', () => {
  function configWith(bankRules: unknown, banks: string[] = []): string {
    const h = require('node:fs').mkdtempSync(path.join(require('node:os').tmpdir(), 'postseal-rules-'));
    require('node:fs').mkdirSync(path.join(h, 'banks'));
    writeFileSync(path.join(h, 'banks', 'default.yaml'), YAML.stringify({ forward: { host: '127.0.0.1', port: 2525 } }));
    for (const b of banks) writeFileSync(path.join(h, 'banks', `${b}.yaml`), '{}\n');
    writeFileSync(path.join(h, 'postseal.yaml'), YAML.stringify({ bankDir: 'banks', listeners: [{ port: 0, bank: 'default' }], bankRules }));
    return path.join(h, 'postseal.yaml');
  }

  it('a network that is not CIDR is refused with its pointer', () => {
    expect(() => loadConfig(configWith({ clientNetworks: [{ networks: ['192.0.2.0/33'], bank: 'MYNETS' }] }, ['MYNETS']))).toThrow(
      /CFG_SCHEMA_INVALID|\/bankRules\/clientNetworks\/0\/networks\/0: "192\.0\.2\.0\/33" has a prefix length/,
    );
  });

  it('a rule naming a bank without a file is refused', () => {
    expect(() => loadConfig(configWith({ senders: [{ senders: ['example.com'], bank: 'NOPE', listenerBanks: ['default'] }] }))).toThrow(/bank "NOPE" has no file/);
  });

  it('a sender rule must name the listeners it applies on, as anyone can forge the envelope sender', () => {
    expect(() => loadConfig(configWith({ senders: [{ senders: ['example.com'], bank: 'BULK' }] }))).toThrow(/\/bankRules\/senders\/0: missing required key "listenerBanks"/);
    expect(() => loadConfig(configWith({ senders: [{ senders: ['@example.com'], bank: 'BULK', listenerBanks: ['default'] }] }))).toThrow(
      /\/bankRules\/senders\/0\/senders\/0: must match pattern/,
    );
  });
});
