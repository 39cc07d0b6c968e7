/**
 * What the message path reports for metrics (services/metrics/), as an interface passed in
 * from main.ts (STYLE.md §10) so that the listener, delivery and DNS code never import a
 * metrics library or a registry singleton. The default does nothing, which keeps the hot path
 * free of metric work when metrics are off (`services.metrics.enabled: false`).
 *
 * Labels must stay bounded: callers pass bank names, stage ids, finding codes, record types,
 * result kinds and error codes, never addresses or free text.
 */
import type { DnsResult, RecordType } from './dns/types';

/** Downstream errors that count as a failure of the next hop (src/errors.ts). */
export type DownstreamFailureKind = 'REINJECT_REFUSED' | 'REINJECT_TIMEOUT' | 'REINJECT_PROTOCOL' | 'REINJECT_TLS';
/** The command being sent when the downstream failed; connecting counts as MAIL. */
export type DownstreamStep = 'MAIL' | 'RCPT' | 'DATA';

export interface MessageReport {
  readonly bank: string;
  /** The verdict, or 'none' when no verdict was reached (too big, spool failure, header too long). */
  /** The verdict's action (pipeline/verdict.ts), or none when the message ended before one. */
  readonly verdict: string;
  /** Class of the reply the upstream got ('2', '4', '5'); on LMTP, of the first recipient's. */
  readonly replyClass: '2' | '4' | '5';
  /** End of the message data (spooled) to the reply; from the DATA command when it was not spooled. */
  readonly durationMs: number;
  /** Spooled size; undefined when the message was not spooled completely. */
  readonly sizeBytes: number | undefined;
  /** Milliseconds per stage id (PipelineResult.timings). */
  readonly timings: Readonly<Record<string, number>>;
  readonly findings: readonly { readonly code: string; readonly detail?: string }[];
}

export interface Telemetry {
  messageDone(report: MessageReport): void;
  downstreamFailed(kind: DownstreamFailureKind, step: DownstreamStep): void;
  /** One lookup sent to the servers (a cache hit is `cached: true` and has no latency worth counting). */
  dnsQuery(type: RecordType, result: DnsResult['kind'], ms: number, cached: boolean): void;
  /** A message entered (+1, DATA command accepted) or left (-1, reply given) the data phase. */
  inFlight(delta: 1 | -1): void;
  /** An SMTP connection was accepted (+1) or closed (-1). */
  connection(delta: 1 | -1): void;
  /** A client connected to (+1) or left (-1) a side service. */
  serviceConnection(service: SideService, delta: 1 | -1): void;
}

/** The side services that serve Postfix on connections of their own. */
export const SIDE_SERVICES = ['policy', 'srs'] as const;
export type SideService = (typeof SIDE_SERVICES)[number];

const nothing = (): void => undefined;

/** The default: metrics off. */
export const noTelemetry: Telemetry = { messageDone: nothing, downstreamFailed: nothing, dnsQuery: nothing, inFlight: nothing, connection: nothing, serviceConnection: nothing };

const DOWNSTREAM_KINDS: readonly string[] = ['REINJECT_REFUSED', 'REINJECT_TIMEOUT', 'REINJECT_PROTOCOL', 'REINJECT_TLS'];

/** Reports `err` if it is a downstream failure (a REINJECT_ code); other errors are not the downstream's. */
export function countDownstreamFailure(telemetry: Telemetry | undefined, err: unknown, step: DownstreamStep): void {
  const code = (err as { code?: unknown } | null)?.code;
  if (telemetry && typeof code === 'string' && DOWNSTREAM_KINDS.includes(code)) telemetry.downstreamFailed(code as DownstreamFailureKind, step);
}
