import { readFileSync } from 'node:fs';
import nodemailer from 'nodemailer';
import { startHarness, type Harness } from '../helpers/postseal';
import { startSink, type Sink } from '../helpers/sink';
import { makeCertificates } from '../helpers/tls-cert';

const certs = makeCertificates();
const raw = 'From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n';

async function withListenerTls(tls: Record<string, unknown>, run: (h: Harness, port: number) => Promise<void>): Promise<Sink> {
  const sink = await startSink();
  const h = await startHarness({ forwardPort: sink.port, main: { listeners: [{ port: 0, bank: 'default', tls: { certFile: certs.certFile, keyFile: certs.keyFile, ...tls } }] } });
  try {
    await run(h, h.app.portOf('default'));
  } finally {
    await h.close();
    await sink.close();
  }
  return sink;
}

/** One message over STARTTLS (or plain text with `plain`), with the client's TLS limits. */
function send(port: number, clientTls: Record<string, unknown>, plain = false) {
  const transport = nodemailer.createTransport({
    host: '127.0.0.1',
    port,
    secure: false,
    ignoreTLS: plain,
    requireTLS: !plain,
    tls: { ca: readFileSync(certs.caFile), servername: 'mail.test', ...clientTls },
  });
  return transport.sendMail({ envelope: { from: 'a@example.org', to: ['b@example.net'] }, raw }).finally(() => transport.close());
}

describe('listener TLS', () => {
  it('the message log line says the session TLS protocol, or none in plain text', async () => {
    let h!: Harness;
    const sink = await withListenerTls({}, async (harness, port) => {
      h = harness;
      await send(port, {});
      await send(port, { maxVersion: 'TLSv1.2' });
      await send(port, {}, true);
    });
    expect(sink.received).toHaveLength(3);
    expect(h.logs.filter((l) => l.msg === 'message').map((l) => l.tls)).toEqual(['TLSv1.3', 'TLSv1.2', 'none']);
  });

  it('minVersion TLSv1.3 refuses a client that offers at most TLS 1.2', async () => {
    const sink = await withListenerTls({ minVersion: 'TLSv1.3' }, async (_h, port) => {
      await expect(send(port, { maxVersion: 'TLSv1.2' })).rejects.toThrow(/protocol version|alert/i);
      await send(port, {});
    });
    expect(sink.received).toHaveLength(1);
  });

  it('the cipher list limits the TLS 1.2 ciphers', async () => {
    const sink = await withListenerTls({ ciphers: 'ECDHE-ECDSA-AES256-GCM-SHA384' }, async (h, port) => {
      await expect(send(port, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256' })).rejects.toThrow(/handshake|cipher|alert/i);
      await send(port, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES256-GCM-SHA384' });
      expect(h.logs.filter((l) => l.msg === 'message').map((l) => l.tls)).toEqual(['TLSv1.2']);
    });
    expect(sink.received).toHaveLength(1);
  });
});
