/**
 * A real SMTP/LMTP server on port 0 standing in for Postfix's reinjection smtpd: it records
 * what it received (envelope, XFORWARD, exact bytes) and can be told to answer a step with
 * a given reply or to stall.
 */
import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import type { ForwardTarget } from '../../src/config/bank-schema';

export interface Received {
  mailFrom: string;
  mailArgs: Record<string, string | true>;
  recipients: { address: string; args: Record<string, string | true> }[];
  xforward: Record<string, string>;
  data: Buffer;
  /** The TLS protocol of the session (TLSv1.3 ...), null in plain text. */
  tls: string | null;
}

export type Step = 'mail' | 'rcpt' | 'data';
export interface Behaviour {
  /** Reply with this code and text at the step (e.g. [451, '4.3.0 try later']). */
  fail?: Partial<Record<Step, [number, string]>>;
  /** Recipients refused at RCPT with this reply. */
  refuseRcpt?: Record<string, [number, string]>;
  /** Never answer at this step. */
  stall?: Step;
  /** LMTP: per-recipient replies after data (address -> reply); others get 250. */
  lmtpRcptReply?: Record<string, [number, string]>;
}

export interface Sink {
  port: number;
  received: Received[];
  behaviour: Behaviour;
  connections: number;
  close(): Promise<void>;
}

const err = ([code, text]: [number, string]) => Object.assign(new Error(text), { responseCode: code });

export async function startSink(opts: { lmtp?: boolean; xforward?: boolean; options?: Partial<SMTPServerOptions> } = {}): Promise<Sink> {
  const sink: Sink = { port: 0, received: [], behaviour: {}, connections: 0, close: async () => undefined };
  const stall = () => new Promise<never>(() => undefined);
  const server = new SMTPServer({
    lmtp: opts.lmtp ?? false,
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    disableReverseLookup: true,
    hideENHANCEDSTATUSCODES: true,
    hideDSN: false,
    useXForward: opts.xforward ?? true,
    logger: false,
    ...opts.options,
    onConnect(_s, cb) {
      sink.connections++;
      cb();
    },
    onMailFrom(_addr, _s, cb) {
      const b = sink.behaviour;
      if (b.stall === 'mail') return void stall();
      if (b.fail?.mail) return cb(err(b.fail.mail));
      cb();
    },
    onRcptTo(addr, _s, cb) {
      const b = sink.behaviour;
      if (b.stall === 'rcpt') return void stall();
      const refused = b.refuseRcpt?.[addr.address] ?? b.fail?.rcpt;
      if (refused) return cb(err(refused));
      cb();
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const b = sink.behaviour;
        if (b.stall === 'data') return;
        if (b.fail?.data) return cb(err(b.fail.data));
        const xf: Record<string, string> = {};
        for (const [k, v] of session.xForward ?? []) if (!k.includes(':')) xf[k] = String(v);
        sink.received.push({
          mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          tls: session.tlsOptions ? session.tlsOptions.version : null,
          mailArgs: (session.envelope.mailFrom ? session.envelope.mailFrom.args : null) || {},
          recipients: session.envelope.rcptTo.map((r) => ({ address: r.address, args: r.args || {} })),
          xforward: xf,
          data: Buffer.concat(chunks),
        });
        if (opts.lmtp && b.lmtpRcptReply) {
          return cb(
            null,
            session.envelope.rcptTo.map((r) => (b.lmtpRcptReply![r.address] ? err(b.lmtpRcptReply![r.address]) : '2.0.0 Ok')),
          );
        }
        cb(null, `2.0.0 Ok: queued as SINK${sink.received.length}`);
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  sink.port = (server.server.address() as AddressInfo).port;
  sink.close = () =>
    new Promise<void>((resolve) => {
      for (const c of server.connections) c.close();
      server.close(() => resolve());
    });
  return sink;
}

/** A plain-SMTP downstream target on 127.0.0.1:`port` with no kept connections, as a bank's `notify` or `forward` resolves to. */
export function sinkTarget(port: number, opts: { heloName?: string; timeoutMs?: number; dataDoneTimeoutMs?: number } = {}): ForwardTarget {
  const timeoutMs = opts.timeoutMs ?? 5000;
  return {
    protocol: 'smtp',
    host: '127.0.0.1',
    port,
    heloName: opts.heloName ?? 'receiver.test',
    connectTimeoutMs: timeoutMs,
    commandTimeoutMs: timeoutMs,
    dataDoneTimeoutMs: opts.dataDoneTimeoutMs ?? timeoutMs,
    tls: { mode: 'none', caFile: '', verifyName: '', certFile: '', keyFile: '' },
    maxIdleConnections: 0,
    idleTimeoutMs: 1000,
  } as unknown as ForwardTarget;
}
