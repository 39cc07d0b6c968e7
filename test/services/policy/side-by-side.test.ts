/**
 * The same request sequences against postseal's policy service and the Debian daemons it
 * replaces (postgrey 1.37 for greylisting, postfix-policyd-spf-python for SPF), compared by
 * action (the first word of the answer; texts differ by design). Where postseal differs on
 * purpose, the test says so; docs/policy.md has the table.
 */
import { readFileSync } from 'node:fs';
import type { PolicyService } from '../../../src/services/policy';
import type { Store } from '../../../src/store/store';
import { startDnsServer, type DnsServer } from '../../helpers/dns-server';
import { fixedClock, PolicyClient, rcptRequest, startPolicy, tempSqliteStore, writePolicyConfig } from '../../helpers/policy';
import { startPolicydSpf, startPostgrey, type Anchor } from '../../helpers/policy-anchors';

jest.setTimeout(60000);

const kind = (answer: string) => answer.split(' ')[0].toUpperCase();
const T0 = 1_800_000_000;

let store: Store;
let service: PolicyService | undefined;
let client: PolicyClient | undefined;
let anchor: Anchor | undefined;
let dns: DnsServer | undefined;
afterEach(async () => {
  client?.close();
  await service?.close();
  await anchor?.stop();
  await dns?.close();
  await store?.close();
});

test('greylisting: the same actions as postgrey, except SRS senders, which postseal folds into one triplet', async () => {
  store = tempSqliteStore();
  const clock = fixedClock(T0);
  service = await startPolicy(
    writePolicyConfig({
      spf: { enabled: false },
      greylist: { whitelistClientFiles: ['/etc/postgrey/whitelist_clients'], whitelistRecipientFiles: ['/etc/postgrey/whitelist_recipients'] },
    }),
    store,
    { clock },
  );
  client = await PolicyClient.connect(service.port);
  anchor = await startPostgrey(['--delay=300', '--whitelist-clients=/etc/postgrey/whitelist_clients', '--whitelist-recipients=/etc/postgrey/whitelist_recipients']);
  const steps: [string, number, Record<string, string>, string][] = [
    ['new triplet', 0, {}, 'DEFER_IF_PERMIT'],
    ['early retry', 60, {}, 'DEFER_IF_PERMIT'],
    ['retry after the delay', 301, {}, 'PREPEND'],
    ['known triplet', 400, {}, 'DUNNO'],
    ['VERP sender, neighbour in the /24', 500, { sender: 'alice+list-123=x@sender.example', client_address: '192.0.2.77' }, 'DUNNO'],
    ['BATV sender', 600, { sender: 'prvs=1234567890=alice@sender.example' }, 'DUNNO'],
    ['client in whitelist_clients', 700, { client_name: 'bendel.debian.org', client_address: '203.0.113.9' }, 'DUNNO'],
    ['postmaster@ in whitelist_recipients', 800, { recipient: 'postmaster@rcpt.example', client_address: '203.0.113.10' }, 'DUNNO'],
    ['other network', 900, { client_address: '198.51.100.10' }, 'DEFER_IF_PERMIT'],
    ['first SRS forward', 1000, { sender: 'SRS0=abcd=TT=orig.example=bob@fwd.example' }, 'DEFER_IF_PERMIT'],
    ['first SRS forward passes', 1400, { sender: 'SRS0=abcd=TT=orig.example=bob@fwd.example' }, 'PREPEND'],
  ];
  const table: string[] = [];
  for (const [name, at, over, expected] of steps) {
    const req = rcptRequest({ ...over, instance: name });
    clock.advance(T0 + at - clock.now() / 1000);
    const ours = await client.ask(req);
    const theirs = await anchor.ask({ ...req, policy_test_time: String(T0 + at) });
    table.push(`${name}: postseal ${kind(ours)}, postgrey ${kind(theirs)}`);
    expect([name, kind(ours)]).toEqual([name, expected]);
    expect([name, kind(theirs)]).toEqual([name, expected]);
  }
  // A new SRS hash (the next forwarded message): postgrey sees a new triplet, postseal the same one.
  clock.advance(100);
  const srs = rcptRequest({ sender: 'SRS0=efgh=UU=orig.example=bob@fwd.example', instance: 'next SRS forward' });
  expect(kind(await client.ask(srs))).toBe('DUNNO');
  expect(kind(await anchor.ask({ ...srs, policy_test_time: String(T0 + 1500) }))).toBe('DEFER_IF_PERMIT');
});

test('SPF: the same actions as policyd-spf with its Debian settings, except temperror, which postseal defers by default', async () => {
  store = tempSqliteStore();
  dns = await startDnsServer({
    'sender.example': { TXT: ['v=spf1 ip4:192.0.2.0/24 -all'] },
    'mail.sender.example': { TXT: ['v=spf1 a -all'], A: ['192.0.2.10'] },
    'forged.example': { TXT: ['v=spf1 ip4:198.51.100.0/24 -all'] },
    'soft.example': { TXT: ['v=spf1 ~all'] },
    'neutral.example': { TXT: ['v=spf1 ?all'] },
    'perm.example': { TXT: ['v=spf1 include:nowhere.invalid -all'] },
    'broken.example': { behaviour: 'servfail' },
  });
  service = await startPolicy(writePolicyConfig({ greylist: { enabled: false } }), store, { dnsServer: dns.server });
  client = await PolicyClient.connect(service.port);
  const port = Number(dns.server.split(':')[1]);
  // Debian's shipped settings, unchanged (HELO_reject and Mail_From_reject Fail, TestOnly = 1, which means "act").
  anchor = startPolicydSpf(port, readFileSync('/etc/postfix-policyd-spf-python/policyd-spf.conf', 'utf8'));
  const steps: [string, Record<string, string>, string, string?][] = [
    ['pass', {}, 'PREPEND'],
    ['fail', { sender: 'x@forged.example' }, '550'],
    ['softfail', { sender: 'x@soft.example' }, 'PREPEND'],
    ['neutral', { sender: 'x@neutral.example' }, 'PREPEND'],
    ['none', { sender: 'x@nopolicy.example', helo_name: 'nopolicy.example' }, 'PREPEND'],
    ['permerror', { sender: 'x@perm.example' }, 'PREPEND'],
    ['HELO fail, MAIL FROM none', { client_address: '203.0.113.5', sender: 'x@nopolicy.example' }, '550'],
    ['null sender, HELO pass', { sender: '' }, 'PREPEND'],
    ['temperror', { sender: 'x@broken.example' }, 'DEFER_IF_PERMIT', 'PREPEND'],
  ];
  for (const [name, over, expected, anchorExpected] of steps) {
    const req = rcptRequest({ ...over, instance: name });
    const ours = await client.ask(req);
    const theirs = await anchor.ask(req);
    if (process.env.SHOW_ANCHORS) console.log(name, '\n  ', ours, '\n  ', theirs, anchor.log());
    expect([name, kind(ours)]).toEqual([name, expected]);
    expect([name, kind(theirs), theirs]).toEqual([name, anchorExpected ?? expected, expect.any(String)]);
    if (expected === '550') expect(theirs).toMatch(/^550 5\.7\.23 /);
  }
});
