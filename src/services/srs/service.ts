/**
 * The SRS map service (config services.srs; README "Forwarding and SRS"): three loopback ports,
 *   socketmapPort   socketmap, maps "forward" and "reverse" (socketmap.ts)
 *   tcpForwardPort  tcp_table, the forward map (tcp-table.ts)
 *   tcpReversePort  tcp_table, the reverse map
 * over one engine (lib/srs/srs.ts) signed with the first secret of services.srs.secretsFile.
 *
 * Start-up fails with CFG_SRS_SECRETS (secrets file missing, empty, readable by everyone) or
 * SRS_LISTEN_FAILED (a port cannot be bound), leaving nothing bound. A reload re-reads the
 * secrets (a bad file refuses the reload, the running secrets stay) and rebinds if the address
 * or a port changed. In a cluster every worker runs it; the workers share the listening sockets.
 * Each connection is closed after idleTimeoutMs without a complete request; at most maxConnections per port.
 */
import net, { type AddressInfo } from 'node:net';
import type { MainConfig } from '../../config/main-schema';
import { PostsealError } from '../../errors';
import type { Logger } from '../../lib/log';
import { readSrsSecrets } from '../../lib/srs/secrets';
import type { Telemetry } from '../../lib/telemetry';
import { createSrsEngine, type SrsEngine } from '../../lib/srs/srs';
import type { LoadedConfig } from '../../setup';
import type { Service } from '../service';
import { createSrsLookup, type SrsLookup } from './lookup';
import { serveSocketmap } from './socketmap';
import { serveTcpTable } from './tcp-table';

export type SrsConfig = MainConfig['services']['srs'];

export interface SrsServiceDeps {
  readonly log: Logger;
  /** Milliseconds since the epoch; tests pass a fixed clock. */
  readonly now?: () => number;
  /** Metrics (lib/telemetry.ts); none: metrics off. */
  readonly telemetry?: Telemetry;
}

type PortName = 'socketmap' | 'tcpForward' | 'tcpReverse';
/** Serves one connection; calls `answered` after each batch of complete requests. */
type Serve = (sock: net.Socket, answered: () => void) => void;

/** The engine for a configuration: reads the secrets file (throws CFG_SRS_SECRETS). */
export function srsEngineFor(s: SrsConfig, now: () => number = Date.now): SrsEngine {
  return createSrsEngine({
    domain: s.domain,
    secrets: readSrsSecrets(s.secretsFile),
    hashLength: s.hashLength,
    hashMin: s.hashMin,
    maxAgeDays: s.maxAgeDays,
    separator: s.separator as '=' | '+' | '-',
    localDomains: s.localDomains,
    excludeDomains: s.excludeDomains,
    now,
  });
}

export class SrsService implements Service {
  readonly name = 'srs';
  private settings: SrsConfig;
  private engine: SrsEngine | undefined;
  private readonly lookup: SrsLookup;
  private servers = new Map<PortName, net.Server>();
  private readonly sockets = new Set<net.Socket>();

  constructor(
    config: LoadedConfig,
    private readonly deps: SrsServiceDeps,
  ) {
    this.settings = config.main.services.srs;
    this.lookup = createSrsLookup(() => this.engine);
  }

  /** Bound ports (the configured ones, or those picked for port 0). */
  get ports(): Record<PortName, number> {
    const p = (n: PortName) => (this.servers.get(n)?.address() as AddressInfo | null)?.port ?? 0;
    return { socketmap: p('socketmap'), tcpForward: p('tcpForward'), tcpReverse: p('tcpReverse') };
  }

  /** Open client connections on every port (for tests and the log). */
  get connectionCount(): number {
    return this.sockets.size;
  }

  async start(): Promise<void> {
    this.engine = srsEngineFor(this.settings, this.deps.now);
    await this.bind(this.settings);
    this.deps.log.info({ service: 'srs', domain: this.settings.domain, ports: this.ports }, 'SRS maps listening');
  }

  async reload(next: LoadedConfig): Promise<void> {
    const s = next.main.services.srs;
    const engine = srsEngineFor(s, this.deps.now);
    const moved =
      s.address !== this.settings.address ||
      s.socketmapPort !== this.settings.socketmapPort ||
      s.tcpForwardPort !== this.settings.tcpForwardPort ||
      s.tcpReversePort !== this.settings.tcpReversePort;
    if (moved) {
      await this.unbind();
      try {
        await this.bind(s);
      } catch (err) {
        await this.bind(this.settings);
        throw err;
      }
    }
    this.engine = engine;
    this.settings = s;
  }

  async close(): Promise<void> {
    const servers = [...this.servers.values()];
    await this.unbind();
    for (const sock of this.sockets) sock.destroy();
    await Promise.all(servers.map((srv) => new Promise<void>((r) => (srv.listening ? srv.close(() => r()) : r()))));
  }

  private async bind(s: SrsConfig): Promise<void> {
    const wanted: [PortName, number, Serve][] = [
      ['socketmap', s.socketmapPort, (sock, answered) => serveSocketmap(sock, this.lookup, answered)],
      ['tcpForward', s.tcpForwardPort, (sock, answered) => serveTcpTable(sock, 'forward', this.lookup, answered)],
      ['tcpReverse', s.tcpReversePort, (sock, answered) => serveTcpTable(sock, 'reverse', this.lookup, answered)],
    ];
    try {
      for (const [name, port, serve] of wanted) this.servers.set(name, await this.listen(s, port, serve));
    } catch (err) {
      await this.unbind();
      throw err;
    }
  }

  private listen(s: SrsConfig, port: number, serve: Serve): Promise<net.Server> {
    const server = net.createServer({ noDelay: true }, (sock) => {
      this.sockets.add(sock);
      this.deps.telemetry?.serviceConnection('srs', 1);
      sock.once('close', () => {
        this.sockets.delete(sock);
        this.deps.telemetry?.serviceConnection('srs', -1);
      });
      // A client that resets mid-request is its own business: drop the connection, nothing else.
      sock.on('error', () => sock.destroy());
      // Timed from the last answered request, not the last byte: a client that trickles a byte
      // now and then would otherwise hold a connection (of maxConnections) for ever.
      const idle = setTimeout(() => sock.destroy(), this.settings.idleTimeoutMs);
      sock.once('close', () => clearTimeout(idle));
      serve(sock, () => idle.refresh());
    });
    server.maxConnections = s.maxConnections;
    return new Promise((resolve, reject) => {
      server.once('error', (err) => reject(new PostsealError('SRS_LISTEN_FAILED', `cannot listen for SRS lookups on ${s.address}:${port}: ${err.message}`, { cause: err })));
      server.listen({ host: s.address, port, backlog: 1024 }, () => resolve(server));
    });
  }

  /** Stops listening at once; connections open on the old ports finish on their own (Postfix closes them). */
  private async unbind(): Promise<void> {
    const servers = [...this.servers.values()];
    this.servers.clear();
    for (const srv of servers) srv.close();
    await new Promise((r) => setImmediate(r));
  }
}
