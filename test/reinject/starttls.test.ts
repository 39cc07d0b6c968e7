import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { startHarness } from '../helpers/postseal';
import { startSink, type Sink } from '../helpers/sink';
import { TestClient } from '../helpers/smtp-client';
import { makeCertificates } from '../helpers/tls-cert';

const msg = 'From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n';
const certs = makeCertificates();

function tlsSink(extra: Record<string, unknown> = {}): Promise<Sink> {
  return startSink({ options: { disabledCommands: ['AUTH'], key: readFileSync(certs.keyFile), cert: readFileSync(certs.certFile), ...extra } });
}

/** Sends `count` messages on one upstream connection through a harness whose forward has `tls`. */
async function through(port: number, tls: Record<string, unknown>, count = 1) {
  const h = await startHarness({ forwardPort: port, banks: { default: { forward: { tls } } } });
  const c = await TestClient.connect(h.app.portOf('default'));
  const results = [];
  for (let i = 0; i < count; i++) results.push(await c.send({ from: `s${i}@example.org`, to: ['b@example.net'], data: msg }));
  await c.quit();
  await h.close();
  return { results, logs: h.logs };
}

describe('STARTTLS to the downstream (forward.tls)', () => {
  it('encrypt verifies the certificate against caFile and verifyName, and the connection is reused encrypted', async () => {
    const sink = await tlsSink();
    const { results } = await through(sink.port, { mode: 'encrypt', caFile: certs.caFile, verifyName: 'mail.test' }, 2);
    await sink.close();
    expect(results.map((r) => r.final?.code)).toEqual([250, 250]);
    expect(sink.received.map((m) => m.tls)).toEqual(['TLSv1.3', 'TLSv1.3']);
    expect(sink.connections).toBe(1);
  });

  it('encrypt with the address as host verifies the certificate against the IP address', async () => {
    const sink = await tlsSink();
    const { results } = await through(sink.port, { mode: 'encrypt', caFile: certs.caFile });
    await sink.close();
    expect(results[0].final?.code).toBe(250);
    expect(sink.received[0].tls).toBe('TLSv1.3');
  });

  it('encrypt to a server that does not announce STARTTLS is 451 4.7.5 to the recipient, and nothing is sent', async () => {
    const sink = await startSink();
    const { results, logs } = await through(sink.port, { mode: 'encrypt', caFile: certs.caFile });
    await sink.close();
    expect(results[0].rcpts[0].code).toBe(451);
    expect(results[0].rcpts[0].text).toMatch(/^4\.7\.5 Downstream TLS failed, try again later: downstream 127\.0\.0\.1:\d+ does not announce STARTTLS/);
    expect(sink.received).toHaveLength(0);
    expect(logs.some((l) => l.msg === 'downstream MAIL failed' && l.code === 'REINJECT_TLS')).toBe(true);
  });

  it('encrypt refuses a certificate from another CA', async () => {
    const sink = await tlsSink();
    const { results } = await through(sink.port, { mode: 'encrypt', caFile: certs.otherCaFile, verifyName: 'mail.test' });
    await sink.close();
    expect(results[0].rcpts[0].code).toBe(451);
    expect(results[0].rcpts[0].text).toMatch(/4\.7\.5 .*TLS handshake with downstream .* failed/);
    expect(sink.received).toHaveLength(0);
  });

  it('encrypt refuses a certificate issued to another name', async () => {
    const sink = await tlsSink();
    const { results } = await through(sink.port, { mode: 'encrypt', caFile: certs.caFile, verifyName: 'other.test' });
    await sink.close();
    expect(results[0].rcpts[0].code).toBe(451);
    expect(results[0].rcpts[0].text).toMatch(/other\.test/);
    expect(sink.received).toHaveLength(0);
  });

  it('may stays plain with a server that does not announce STARTTLS', async () => {
    const sink = await startSink();
    const { results } = await through(sink.port, { mode: 'may' });
    await sink.close();
    expect(results[0].final?.code).toBe(250);
    expect(sink.received[0].tls).toBeNull();
  });

  it('may encrypts without verifying the certificate', async () => {
    const sink = await tlsSink();
    const { results } = await through(sink.port, { mode: 'may', caFile: certs.otherCaFile });
    await sink.close();
    expect(results[0].final?.code).toBe(250);
    expect(sink.received[0].tls).toBe('TLSv1.3');
  });

  it('may does not fall back to plain text after a failed handshake: 451 4.7.5', async () => {
    // Announces STARTTLS, says 220, then speaks plain text where the handshake should be.
    const commands: string[] = [];
    const server = net.createServer((sock) => {
      sock.write('220 broken ESMTP\r\n');
      sock.on('data', (d) => {
        const line = d.toString().trim();
        commands.push(line);
        if (/^EHLO/i.test(line)) sock.write('250-broken\r\n250 STARTTLS\r\n');
        else if (line === 'STARTTLS') sock.write('220 go ahead\r\n250 not a handshake\r\n');
        else sock.write('250 ok\r\n');
      });
      sock.on('error', () => undefined);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { results } = await through((server.address() as AddressInfo).port, { mode: 'may' });
    await new Promise((r) => server.close(r));
    expect(results[0].rcpts[0].code).toBe(451);
    expect(results[0].rcpts[0].text).toMatch(/^4\.7\.5 .*TLS handshake/);
    expect(commands.some((c) => c.startsWith('MAIL'))).toBe(false);
  });

  it('a client certificate is presented to a server that requires one', async () => {
    const strict = { requestCert: true, rejectUnauthorized: true, ca: readFileSync(certs.caFile) };
    const sink = await tlsSink(strict);
    const withCert = await through(sink.port, { mode: 'encrypt', caFile: certs.caFile, verifyName: 'mail.test', certFile: certs.clientCertFile, keyFile: certs.clientKeyFile });
    await sink.close();
    // rejectUnauthorized: the session exists only because the certificate was sent and verified.
    expect(withCert.results[0].final?.code).toBe(250);
    expect(sink.received[0].tls).toBe('TLSv1.3');
  });
});

describe('forward.tls in the configuration', () => {
  function load(tls: Record<string, unknown>) {
    const { mkdtempSync, mkdirSync, writeFileSync } = require('node:fs') as typeof import('node:fs');
    const path = require('node:path') as typeof import('node:path');
    const dir = mkdtempSync(path.join(require('node:os').tmpdir(), 'postseal-ftls-'));
    mkdirSync(path.join(dir, 'banks'));
    writeFileSync(path.join(dir, 'banks', 'default.yaml'), JSON.stringify({ forward: { host: '127.0.0.1', port: 2525, tls } }));
    writeFileSync(path.join(dir, 'postseal.yaml'), 'bankDir: banks\nlisteners:\n  - { port: 0, bank: default }\n');
    return () => require('../../src/setup').loadConfig(path.join(dir, 'postseal.yaml'));
  }

  it('a CA file that cannot be read stops loading with its pointer', () => {
    expect(load({ mode: 'encrypt', caFile: 'missing-ca.pem' })).toThrow(/\/forward\/tls\/caFile: cannot read .*missing-ca\.pem/);
  });

  it('a client certificate without its key is refused', () => {
    expect(load({ mode: 'may', certFile: certs.clientCertFile })).toThrow(/certFile and keyFile go together/);
  });

  it('the defaults are plain text', () => {
    expect(load({})().banks.get('default').forward.tls).toEqual({ mode: 'none', caFile: '', verifyName: '', certFile: '', keyFile: '' });
  });
});
