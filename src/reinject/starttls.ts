/**
 * The TLS handshake of STARTTLS to the downstream (RFC 3207), per the bank's forward.tls:
 * `encrypt` verifies the certificate against caFile (empty: the system store) and the name
 * verifyName (empty: the target host; an address is checked against the IP SANs); `may`
 * encrypts without verifying. Client certificate from certFile/keyFile. TLS 1.2 at least.
 *
 * Fails with REINJECT_TLS: the files cannot be read, the handshake fails or takes longer than
 * commandTimeoutMs, the certificate does not verify. The caller (smtp-client.ts) has sent
 * STARTTLS and read its 220; it never falls back to plain text after a failure.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import type { ForwardTarget } from '../config/bank-schema';
import { PostsealError } from '../errors';

/** The encrypted socket over `raw`; on failure both are destroyed. */
export async function handshake(raw: net.Socket, target: ForwardTarget, label: string): Promise<tls.TLSSocket> {
  const conf = target.tls;
  const name = conf.verifyName || target.host;
  let secure: tls.TLSSocket;
  try {
    secure = tls.connect({
      socket: raw,
      secureContext: clientContext(conf),
      rejectUnauthorized: conf.mode === 'encrypt',
      ...(net.isIP(name) ? {} : { servername: name }),
      checkServerIdentity: (_host, cert) => tls.checkServerIdentity(name, cert),
    });
  } catch (err) {
    raw.destroy();
    throw new PostsealError('REINJECT_TLS', `downstream ${label}: ${(err as Error).message}`, { cause: err });
  }
  await new Promise<void>((resolve, reject) => {
    const fail = (err: Error) => {
      clearTimeout(timer);
      secure.destroy();
      reject(new PostsealError('REINJECT_TLS', `TLS handshake with downstream ${label} failed: ${err.message}`, { cause: err }));
    };
    const timer = setTimeout(() => fail(new Error(`no handshake within ${target.commandTimeoutMs} ms`)), target.commandTimeoutMs);
    const closed = () => fail(new Error('connection closed'));
    secure.once('error', fail);
    secure.once('close', closed);
    secure.once('secureConnect', () => {
      clearTimeout(timer);
      secure.off('error', fail);
      secure.off('close', closed);
      resolve();
    });
  });
  return secure;
}

/** One secure context per target (config objects are frozen and outlive the connections). */
const contexts = new WeakMap<object, tls.SecureContext>();

function clientContext(conf: ForwardTarget['tls']): tls.SecureContext {
  let ctx = contexts.get(conf);
  if (!ctx) {
    const read = (file: string) => (file ? readFileSync(file) : undefined);
    ctx = tls.createSecureContext({ ca: read(conf.caFile), cert: read(conf.certFile), key: read(conf.keyFile), minVersion: 'TLSv1.2' });
    contexts.set(conf, ctx);
  }
  return ctx;
}
