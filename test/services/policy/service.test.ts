/**
 * The policy service over real sockets: SPF and greylisting decisions as Postfix would ask for
 * them (a real sqlite store, the loopback DNS server), and the protocol's robustness: pipelined
 * requests, unknown attributes, oversized and malformed requests, a client that stops
 * mid-request, many connections, internal errors and timeouts.
 */
import { mkdtempSync, statSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { PolicyService } from '../../../src/services/policy';
import { openSqliteStore } from '../../../src/store/sqlite';
import type { Store } from '../../../src/store/store';
import { startDnsServer, type DnsServer } from '../../helpers/dns-server';
import { fixedClock, PolicyClient, rcptRequest, requestText, startPolicy, tempSqliteStore, writePolicyConfig, type Clock } from '../../helpers/policy';

jest.setTimeout(60000);

let dns: DnsServer;
beforeAll(async () => {
  dns = await startDnsServer({
    'sender.example': { TXT: ['v=spf1 ip4:192.0.2.0/24 -all'] },
    'mail.sender.example': { TXT: ['v=spf1 a -all'], A: ['192.0.2.10'] },
    'forged.example': { TXT: ['v=spf1 ip4:198.51.100.0/24 -all exp=why.forged.example'] },
    'why.forged.example': { TXT: ["%{i} is not one of %{d}'s servers"] },
    'soft.example': { TXT: ['v=spf1 ~all'] },
    'longexp.example': { TXT: ['v=spf1 -all exp=why.longexp.example'] },
    'why.longexp.example': { TXT: [`%{i} ${'is not ours '.repeat(80)}`] },
    'utf8exp.example': { TXT: ['v=spf1 -all exp=why.utf8exp.example'] },
    'why.utf8exp.example': { TXT: ['%{l} is not ours'] },
    'slow.example': { behaviour: 'timeout' },
    'broken.example': { behaviour: 'servfail' },
  });
});
afterAll(() => dns.close());

let store: Store;
let service: PolicyService | undefined;
const clients: PolicyClient[] = [];
beforeEach(() => {
  store = tempSqliteStore();
});
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await service?.close();
  service = undefined;
  await store.close().catch(() => undefined);
});

async function start(policy: Record<string, unknown> = {}, clock?: Clock): Promise<PolicyService> {
  service = await startPolicy(writePolicyConfig(policy), store, { dnsServer: dns.server, clock });
  return service;
}

async function connect(): Promise<PolicyClient> {
  const c = await PolicyClient.connect((service as PolicyService).port);
  clients.push(c);
  return c;
}

const spfOnly = { greylist: { enabled: false } };
const greyOnly = { spf: { enabled: false } };

describe('SPF policy', () => {
  it('prepends Received-SPF with the pass result once per message', async () => {
    await start(spfOnly);
    const c = await connect();
    const req = rcptRequest();
    const first = await c.ask(req);
    expect(first).toMatch(
      /^PREPEND Received-SPF: pass \(mx\.test\.example: domain of alice@sender\.example designates 192\.0\.2\.10 as permitted sender\) client-ip=192\.0\.2\.10; envelope-from="alice@sender\.example"; helo=mail\.sender\.example; receiver=mx\.test\.example; identity=mailfrom;/,
    );
    expect(await c.ask({ ...req, recipient: 'carol@rcpt.example' })).toBe('DUNNO');
  });

  it('keeps Received-SPF within 998 octets however long the HELO name and the sender a client chose', async () => {
    // Postfix takes SMTP commands of 2,048 octets and prepends the field as one line: it cannot be folded.
    await start(spfOnly);
    const c = await connect();
    const answer = await c.ask(rcptRequest({ sender: `${'a'.repeat(900)}@sender.example`, helo_name: `${'h'.repeat(1500)}.sender.example` }));
    expect(answer).toMatch(/^PREPEND Received-SPF: pass \(.*\) client-ip=192\.0\.2\.10; envelope-from="a+\.\.\."; helo="h+\.\.\."; receiver=mx\.test\.example; identity=mailfrom;/);
    expect(Buffer.byteLength(answer.slice('PREPEND '.length))).toBeLessThanOrEqual(998);
  });

  it("rejects a MAIL FROM fail with 550 5.7.23 and the domain's explanation", async () => {
    await start(spfOnly);
    const c = await connect();
    expect(await c.ask(rcptRequest({ sender: 'x@forged.example' }))).toBe("550 5.7.23 SPF validation failed (mailfrom fail): 192.0.2.10 is not one of forged.example's servers");
  });

  it("cuts a long exp= explanation so that Postfix's 550 line stays within SMTP's 512 octets", async () => {
    // Postfix passes the text on in one reply line, after "550 5.7.23 <recipient>: Recipient
    // address rejected: " (seen through Postfix 3.7: an 850-character line).
    await start(spfOnly);
    const answer = await (await connect()).ask(rcptRequest({ sender: 'x@longexp.example' }));
    expect(answer).toMatch(/^550 5\.7\.23 SPF validation failed \(mailfrom fail\): 192\.0\.2\.10 is not ours is not ours .*\.\.\.$/);
    expect(answer.length).toBeLessThanOrEqual(220);
    // Counted in octets: a UTF-8 local-part (SMTPUTF8) in %{l} is two octets a letter.
    const utf8 = await (await connect()).ask(rcptRequest({ sender: `${'ö'.repeat(100)}@utf8exp.example`, instance: 'utf8' }));
    expect(utf8).toMatch(/^550 5\.7\.23 .*\.\.\.$/);
    // (PolicyClient reads latin1: one character an octet.)
    expect(utf8.length).toBeLessThanOrEqual(220);
  });

  it('rejects a HELO fail even when MAIL FROM has no policy', async () => {
    await start(spfOnly);
    const c = await connect();
    const answer = await c.ask(rcptRequest({ client_address: '203.0.113.5', sender: 'x@nopolicy.example' }));
    expect(answer).toMatch(/^550 5\.7\.23 SPF validation failed \(helo fail\)/);
  });

  it('accepts softfail with a Received-SPF unless rejectOn lists it', async () => {
    await start(spfOnly);
    expect(await (await connect()).ask(rcptRequest({ sender: 'x@soft.example' }))).toMatch(/^PREPEND Received-SPF: softfail /);
    await service?.close();
    await start({ ...spfOnly, spf: { rejectOn: ['fail', 'softfail'] } });
    expect(await (await connect()).ask(rcptRequest({ sender: 'x@soft.example' }))).toMatch(/^550 5\.7\.23 /);
  });

  it('defers on a DNS error (temperror) by default and adds Received-SPF: temperror with temperror: accept', async () => {
    await start(spfOnly);
    expect(await (await connect()).ask(rcptRequest({ sender: 'x@broken.example' }))).toBe('DEFER_IF_PERMIT 4.4.3 SPF check could not complete (DNS error), try again later');
    await service?.close();
    await start({ ...spfOnly, spf: { temperror: 'accept' } });
    expect(await (await connect()).ask(rcptRequest({ sender: 'x@broken.example' }))).toMatch(/^PREPEND Received-SPF: temperror .*problem=/);
  });

  it('skips SASL clients and skipNetworks', async () => {
    await start({ ...spfOnly, skipNetworks: ['203.0.113.0/24'] });
    const c = await connect();
    expect(await c.ask(rcptRequest({ sender: 'x@forged.example', sasl_username: 'alice' }))).toBe('DUNNO');
    expect(await c.ask(rcptRequest({ sender: 'x@forged.example', client_address: '203.0.113.9' }))).toBe('DUNNO');
  });
});

describe('greylisting', () => {
  it('answers 450 4.7.1 with when to retry, then passes the retry after the delay with one X-Greylist field', async () => {
    const clock = fixedClock();
    await start(greyOnly, clock);
    const c = await connect();
    expect(await c.ask(rcptRequest())).toBe('DEFER_IF_PERMIT 4.7.1 Greylisted, try again in 300 seconds (after 2027-01-15 08:05:00 UTC)');
    clock.advance(120);
    expect(await c.ask(rcptRequest())).toMatch(/^DEFER_IF_PERMIT 4\.7\.1 Greylisted, try again in 180 seconds/);
    clock.advance(200);
    const req = rcptRequest();
    expect(await c.ask(req)).toMatch(/^PREPEND X-Greylist: delayed 320 seconds by postseal at mx\.test\.example; /);
    expect(await c.ask({ ...req, protocol_state: 'DATA', recipient: '' })).toBe('DUNNO');
    expect(await c.ask(rcptRequest())).toBe('DUNNO');
  });

  it('sends X-Greylist at DATA when Received-SPF took the RCPT answer', async () => {
    const clock = fixedClock();
    await start({}, clock);
    const c = await connect();
    expect(await c.ask(rcptRequest())).toMatch(/^DEFER_IF_PERMIT 4\.7\.1 /);
    clock.advance(301);
    const req = rcptRequest();
    expect(await c.ask(req)).toMatch(/^PREPEND Received-SPF: pass /);
    expect(await c.ask({ ...req, protocol_state: 'DATA', recipient: '' })).toMatch(/^PREPEND X-Greylist: delayed 301 seconds/);
  });

  it('does not greylist postmaster, listed recipients from a postgrey file, or a domain that passed SPF and is listed', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'postseal-policy-wl-'));
    writeFileSync(path.join(dir, 'whitelist_recipients'), '# postgrey format\nvip@rcpt.example\n');
    writeFileSync(path.join(dir, 'whitelist_clients'), 'sender.example\n');
    service = await startPolicy(writePolicyConfig({ spf: { enabled: false }, greylist: { whitelistRecipientFiles: ['whitelist_recipients'] } }, {}, dir), store, {
      dnsServer: dns.server,
    });
    const c = await connect();
    expect(await c.ask(rcptRequest({ recipient: 'postmaster@rcpt.example' }))).toBe('DUNNO');
    expect(await c.ask(rcptRequest({ recipient: 'vip+x@rcpt.example' }))).toBe('DUNNO');
    await service.close();
    service = await startPolicy(writePolicyConfig({ greylist: { skipSpfPassDomains: ['sender.example'] }, spf: { receivedSpf: false } }), store, { dnsServer: dns.server });
    expect(await (await connect()).ask(rcptRequest())).toBe('DUNNO');
  });

  it('passes a retry after a restart between the first attempt and the retry (the triplet is in the store file)', async () => {
    const clock = fixedClock();
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'postseal-policy-restart-')), 'state.db');
    store = openSqliteStore({ file, keyPrefix: 'test:', busyTimeoutMs: 2000 });
    await start(greyOnly, clock);
    expect(await (await connect()).ask(rcptRequest())).toMatch(/^DEFER_IF_PERMIT 4\.7\.1 /);
    await (service as PolicyService).close();
    await store.close();
    clock.advance(301);
    store = openSqliteStore({ file, keyPrefix: 'test:', busyTimeoutMs: 2000 });
    await start(greyOnly, clock);
    expect(await (await connect()).ask(rcptRequest())).toMatch(/^PREPEND X-Greylist: delayed 301 seconds /);
  });

  it('does not greylist (or store) a request without a recipient, as postgrey answers DUNNO to one', async () => {
    await start(greyOnly);
    const c = await connect();
    const req = rcptRequest();
    delete req.recipient;
    expect(await c.ask(req)).toBe('DUNNO');
    expect(await c.ask({ ...req, recipient: '' })).toBe('DUNNO');
  });

  it('refuses to start when a whitelist file is missing, naming the setting', async () => {
    await expect(start({ greylist: { whitelistClientFiles: ['missing'] } })).rejects.toMatchObject({
      code: 'CFG_POLICY_WHITELIST',
      message: expect.stringContaining('/services/policy/greylist/whitelistClientFiles/0'),
    });
    service = undefined;
  });

  it('refuses to start when the retry window is not longer than the delay, since no retry could ever pass', async () => {
    await expect(start({ greylist: { delaySec: 3600, retryWindowSec: 1800 } })).rejects.toMatchObject({
      code: 'CFG_INCONSISTENT',
      message: expect.stringContaining('/services/policy/greylist/retryWindowSec (1800)'),
    });
    service = undefined;
  });
});

describe('protocol robustness', () => {
  it('answers pipelined requests in order on one connection', async () => {
    const clock = fixedClock();
    await start(greyOnly, clock);
    const c = await connect();
    const answers = [c.next(), c.next(), c.next()];
    c.write(requestText(rcptRequest({ recipient: 'postmaster@x.example' })) + requestText(rcptRequest()) + requestText({ request: 'junk' }));
    expect(await Promise.all(answers)).toEqual(['DUNNO', expect.stringMatching(/^DEFER_IF_PERMIT 4\.7\.1/), 'DUNNO']);
  });

  it('ignores unknown attributes and CRLF line ends', async () => {
    await start(greyOnly);
    const c = await connect();
    const answer = c.next();
    c.write(requestText({ ...rcptRequest(), future_attribute: 'x'.repeat(500), 'weird-name': '' }).replace(/\n/g, '\r\n'));
    expect(await answer).toMatch(/^DEFER_IF_PERMIT 4\.7\.1/);
  });

  it('answers an oversized request with DEFER_IF_PERMIT and closes the connection', async () => {
    await start({ ...greyOnly, maxRequestBytes: 2048 });
    const c = await connect();
    const answer = c.next();
    c.write(`request=smtpd_access_policy\nccert_subject=${'A'.repeat(100000)}\n\n`);
    expect(await answer).toBe('DEFER_IF_PERMIT 4.3.0 Policy request too large');
    await c.closed;
  });

  it('answers a line without "=" with DEFER_IF_PERMIT and closes the connection', async () => {
    await start(greyOnly);
    const c = await connect();
    const answer = c.next();
    c.write('GET / HTTP/1.0\n\n');
    expect(await answer).toBe('DEFER_IF_PERMIT 4.3.0 Policy request malformed');
    await c.closed;
  });

  it('closes a connection whose client stops mid-request, and keeps serving others', async () => {
    await start({ ...greyOnly, requestTimeoutMs: 300 });
    const stuck = await connect();
    stuck.write('request=smtpd_access_policy\nclient_address=192.0.2.1\n');
    const t = Date.now();
    await stuck.closed;
    expect(Date.now() - t).toBeLessThan(3000);
    expect(await (await connect()).ask(rcptRequest())).toMatch(/^DEFER_IF_PERMIT 4\.7\.1/);
  });

  it('answers the requests of a client that half-closes after writing them (printf ... | nc -N), then closes', async () => {
    // SPF makes the answers wait for DNS, so they are written after the client's FIN arrived.
    await start(spfOnly);
    const req = rcptRequest();
    const text = requestText(req) + requestText({ ...req, recipient: 'carol@rcpt.example' });
    const answers = await new Promise<string>((resolve, reject) => {
      let got = '';
      const s = net.connect((service as PolicyService).port, '127.0.0.1', () => s.end(text));
      s.setEncoding('latin1');
      s.on('data', (d: string) => (got += d));
      s.on('close', () => resolve(got));
      s.on('error', reject);
    });
    expect(answers).toMatch(/^action=PREPEND Received-SPF: pass [^\n]*\n\naction=DUNNO\n\n$/);
  });

  it('drops a request left unfinished by a client that half-closes, and closes the connection', async () => {
    await start(greyOnly);
    const answers = await new Promise<string>((resolve, reject) => {
      let got = '';
      const s = net.connect((service as PolicyService).port, '127.0.0.1', () => s.end('request=smtpd_access_policy\nclient_address=192.0.2.1\n'));
      s.setEncoding('latin1');
      s.on('data', (d: string) => (got += d));
      s.on('close', () => resolve(got));
      s.on('error', reject);
    });
    expect(answers).toBe('');
  });

  it('stops reading from a client that writes requests and never reads the answers, so the answers waiting for it stay bounded', async () => {
    await start(greyOnly);
    const c = await connect();
    c.socket.pause();
    const batch = requestText({ request: 'smtpd_access_policy', client_address: '192.0.2.1', recipient: 'r@rcpt.example' }).repeat(1000);
    const until = Date.now() + 4000;
    while (Date.now() < until) {
      if (c.socket.writableLength < 1 << 20) c.write(batch);
      await new Promise((r) => setTimeout(r, 1));
    }
    // Unbounded, this was 1.8 MB after 4 s and growing; now at most one answer past the
    // socket's high-water mark (node's default, 64 KB on node 24, the same for our client).
    expect((service as PolicyService).bufferedAnswerBytes).toBeLessThan(c.socket.writableHighWaterMark + 1024);
  });

  it('answers DEFER_IF_PERMIT 4.3.0 when the store fails, and keeps the connection', async () => {
    await start(greyOnly);
    const c = await connect();
    await store.close();
    expect(await c.ask(rcptRequest())).toBe('DEFER_IF_PERMIT 4.3.0 Policy service error, try again later');
    expect(await c.ask(rcptRequest())).toBe('DEFER_IF_PERMIT 4.3.0 Policy service error, try again later');
  });

  it('answers DEFER_IF_PERMIT within decisionTimeoutMs when DNS does not answer', async () => {
    await start({ ...spfOnly, decisionTimeoutMs: 200 });
    // The resolver's own timeout (300 ms) is longer than the decision's.
    const t = Date.now();
    expect(await (await connect()).ask(rcptRequest({ sender: 'x@slow.example', helo_name: 'slow.example' }))).toBe(
      'DEFER_IF_PERMIT 4.3.0 Policy service error, try again later (timeout)',
    );
    expect(Date.now() - t).toBeLessThan(1000);
  });

  it('serves 1,000 concurrent connections with bounded memory', async () => {
    await start(greyOnly);
    const port = (service as PolicyService).port;
    const before = process.memoryUsage().rss;
    const conns = await Promise.all(Array.from({ length: 1000 }, () => PolicyClient.connect(port)));
    clients.push(...conns);
    const answers = await Promise.all(conns.map((c, i) => c.ask(rcptRequest({ recipient: `u${i}@rcpt.example` }))));
    expect(answers.every((a) => a.startsWith('DEFER_IF_PERMIT 4.7.1'))).toBe(true);
    expect((service as PolicyService).connections).toBe(1000);
    // Each connection holds a socket and a reader capped at maxRequestBytes: well under 100 KB each.
    expect(process.memoryUsage().rss - before).toBeLessThan(100 * 1024 * 1024);
  });

  it('serves a unix socket instead of TCP when services.policy.socket is set', async () => {
    const socketPath = path.join(mkdtempSync(path.join(tmpdir(), 'postseal-policy-sock-')), 'policy');
    await start({ ...greyOnly, socket: socketPath });
    const s = net.connect(socketPath);
    const answer = await new Promise<string>((resolve, reject) => {
      let buf = '';
      s.on('data', (d) => {
        buf += d.toString();
        if (buf.endsWith('\n\n')) resolve(buf);
      });
      s.on('error', reject);
      s.write(requestText(rcptRequest()));
    });
    s.destroy();
    expect(answer).toMatch(/^action=DEFER_IF_PERMIT 4\.7\.1 Greylisted/);
    // Whatever the umask (the systemd unit's is 077), Postfix's smtpd can connect.
    expect(statSync(socketPath).mode & 0o777).toBe(0o666);
  });

  it('refuses to start on a socket path that names a file which is no socket, and leaves the file alone', async () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'postseal-policy-sock-')), 'precious');
    writeFileSync(file, 'keep me');
    await expect(start({ ...greyOnly, socket: file })).rejects.toMatchObject({ code: 'POLICY_LISTEN_FAILED' });
    service = undefined;
    expect(readFileSync(file, 'utf8')).toBe('keep me');
  });

  it('closes connections past maxConnections at once', async () => {
    await start({ ...greyOnly, maxConnections: 2 });
    const a = await connect();
    const b = await connect();
    const c = await connect();
    await c.closed;
    expect(await a.ask(rcptRequest())).toMatch(/^DEFER_IF_PERMIT/);
    expect(await b.ask(rcptRequest())).toMatch(/^DEFER_IF_PERMIT/);
  });
});
