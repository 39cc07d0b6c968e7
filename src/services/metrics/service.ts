/**
 * The metrics service (config services.metrics): an HTTP server, loopback by default, with
 *   GET /metrics  the Prometheus text format (a cluster's primary sums its workers: cluster.ts)
 *   GET /healthz  200 "ok" while the process runs
 *   GET /readyz   200 "ready", or 503 with the reason in plain text (readiness.ts)
 * Anything else is 404 (405 for a method other than GET/HEAD). No authentication: the
 * default address is 127.0.0.1.
 *
 * Fails with METRICS_LISTEN_FAILED when the port cannot be bound. A reload that changes
 * address or port moves the listener (the old one is closed first, so the same port on
 * another address works; if the new one cannot bind, the old one is bound again and the
 * reload refused). `enabled` is read at start only: the message path's hooks are set up then.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { LoadedConfig } from '../../setup';
import type { MainConfig } from '../../config/main-schema';
import { PostsealError } from '../../errors';
import type { Logger } from '../../lib/log';
import type { Service } from '../service';
import { createReadiness, type Readiness } from './readiness';

export type MetricsConfig = MainConfig['services']['metrics'];

export interface MetricsSource {
  readonly contentType: string;
  metrics(): Promise<string>;
}

export interface MetricsServiceDeps {
  readonly log: Logger;
  readonly source: MetricsSource;
  /** Why the SMTP listeners are not serving, or null when they are. */
  readonly listenersDown: () => string | null;
}

export class MetricsService implements Service {
  readonly name = 'metrics';
  private server: http.Server | undefined;
  private config: LoadedConfig;
  private readonly readiness: Readiness;

  constructor(
    config: LoadedConfig,
    private readonly deps: MetricsServiceDeps,
  ) {
    this.config = config;
    this.readiness = createReadiness({ listenersDown: deps.listenersDown, config: () => this.config });
  }

  /** The bound port (the configured one, or the one picked for port 0). */
  get port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? 0;
  }

  async start(): Promise<void> {
    this.server = await this.listen(this.settings(this.config));
  }

  async reload(next: LoadedConfig): Promise<void> {
    const was = this.settings(this.config);
    const now = this.settings(next);
    if (now.enabled !== was.enabled) this.deps.log.warn({ enabled: now.enabled }, 'services.metrics.enabled changes at the next start, not on reload');
    if (now.address !== was.address || now.port !== was.port) {
      await this.closeServer();
      try {
        this.server = await this.listen(now);
      } catch (err) {
        this.server = await this.listen(was).catch(() => undefined);
        throw err;
      }
    }
    this.config = next;
  }

  async close(): Promise<void> {
    await this.closeServer();
  }

  private settings(config: LoadedConfig): MetricsConfig {
    return config.main.services.metrics;
  }

  private listen(s: MetricsConfig): Promise<http.Server> {
    const server = http.createServer((req, res) => void this.handle(req, res));
    // A scraper that keeps its connection open must not hold up shutdown.
    server.keepAliveTimeout = 5000;
    return new Promise((resolve, reject) => {
      server.once('error', (err) => reject(new PostsealError('METRICS_LISTEN_FAILED', `cannot listen for metrics on ${s.address}:${s.port}: ${err.message}`, { cause: err })));
      server.listen(s.port, s.address, () => {
        const port = (server.address() as AddressInfo).port;
        this.deps.log.info({ address: s.address, port }, 'metrics listening');
        resolve(server);
      });
    });
  }

  private async closeServer(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    const known = path === '/metrics' || path === '/healthz' || path === '/readyz';
    if (!known) return send(res, 404, 'not found: try /metrics, /healthz or /readyz\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'only GET and HEAD\n', { allow: 'GET, HEAD' });
    try {
      if (path === '/healthz') return send(res, 200, 'ok\n');
      if (path === '/readyz') {
        const reason = await this.readiness.check();
        return reason ? send(res, 503, `not ready: ${reason}\n`) : send(res, 200, 'ready\n');
      }
      const body = await this.deps.source.metrics();
      return send(res, 200, body, { 'content-type': this.deps.source.contentType });
    } catch (err) {
      this.deps.log.error({ err, path }, 'metrics request failed');
      return send(res, 500, 'internal error\n');
    }
  }
}

function send(res: http.ServerResponse, status: number, body: string, headers: http.OutgoingHttpHeaders = {}): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
