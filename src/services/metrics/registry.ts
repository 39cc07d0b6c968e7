/**
 * The Prometheus metrics of one postseal process (prom-client), and the Telemetry
 * (lib/telemetry.ts) that the message path calls to update them. Each process has its own
 * Registry, made here and passed on, never prom-client's global one: tests run several
 * instances in one process, and a cluster's primary sums its workers' registries (cluster.ts).
 *
 * Names follow the Prometheus conventions: `postseal_` prefix, base units in the name
 * (seconds, bytes), `_total` on counters. Every label value comes from a closed set: bank
 * names (the configuration's), stage ids, finding codes (declared by the stages in stages/registry.ts), DNS record
 * types and result kinds, REINJECT_ error codes, SMTP commands, reply classes.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { SIDE_SERVICES, type DownstreamFailureKind, type DownstreamStep, type MessageReport, type Telemetry } from '../../lib/telemetry';
import { stageRegistry } from '../../stages/registry';
import { registerEventLoopDelay } from './event-loop';

/** Seconds: a message takes milliseconds (pass-through) to minutes (messageDeadlineMs). */
const MESSAGE_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
/** Seconds: a stage is sub-millisecond (loop-guard) to its timeout (DNS-bound checks). */
const STAGE_SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Seconds: a cached recursive answer is ~1 ms, a lookup that times out takes timeoutMs x tries. */
const DNS_SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Bytes: 1 KiB to 64 MiB by factors of 4. */
const SIZE_BYTES = [1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864];

const STEPS: readonly DownstreamStep[] = ['MAIL', 'RCPT', 'DATA'];
const KINDS: readonly DownstreamFailureKind[] = ['REINJECT_REFUSED', 'REINJECT_TIMEOUT', 'REINJECT_PROTOCOL', 'REINJECT_TLS'];

/** The stage that declares each finding code (stages/registry.ts). */
const STAGE_OF_CODE: ReadonlyMap<string, string> = new Map(stageRegistry.flatMap((d) => d.findings.map((code) => [code, d.id] as const)));

/** The stage id a finding code belongs to; 'unknown' for a code without a stage prefix. */
export function stageOfFinding(code: string): string {
  return STAGE_OF_CODE.get(code) ?? 'unknown';
}

export interface ProcessMetrics {
  readonly registry: Registry;
  readonly telemetry: Telemetry;
}

export function createProcessMetrics(): ProcessMetrics {
  const registry = new Registry();
  const registers = [registry];
  const messages = new Counter({
    name: 'postseal_messages_total',
    help: 'Messages sent with DATA, by bank, verdict (pass, reject, tempfail, discard; none when no verdict was reached) and class of the reply given upstream (2xx, 4xx, 5xx).',
    labelNames: ['bank', 'verdict', 'reply'] as const,
    registers,
  });
  const findings = new Counter({
    name: 'postseal_findings_total',
    help: 'Findings reported by the stages, by stage and finding code.',
    labelNames: ['stage', 'code'] as const,
    registers,
  });
  const stageSeconds = new Histogram({
    name: 'postseal_stage_duration_seconds',
    help: 'Time each stage took on a message, by stage.',
    labelNames: ['stage'] as const,
    buckets: STAGE_SECONDS,
    registers,
  });
  const messageSeconds = new Histogram({
    name: 'postseal_message_duration_seconds',
    help: 'Time from the end of the message data to the reply given upstream, by bank.',
    labelNames: ['bank'] as const,
    buckets: MESSAGE_SECONDS,
    registers,
  });
  const messageBytes = new Histogram({
    name: 'postseal_message_size_bytes',
    help: 'Size of each message spooled, by bank.',
    labelNames: ['bank'] as const,
    buckets: SIZE_BYTES,
    registers,
  });
  const dnsLookups = new Counter({
    name: 'postseal_dns_lookups_total',
    help: 'DNS lookups by record type, result (answer, nxdomain, nodata, temperror) and whether the cache answered (hit) or the servers were asked (miss).',
    labelNames: ['type', 'result', 'cache'] as const,
    registers,
  });
  const dnsSeconds = new Histogram({
    name: 'postseal_dns_lookup_duration_seconds',
    help: 'Time of DNS lookups sent to the servers (cache misses, CNAME chains and retries included), by record type and result.',
    labelNames: ['type', 'result'] as const,
    buckets: DNS_SECONDS,
    registers,
  });
  const downstreamFailures = new Counter({
    name: 'postseal_downstream_failures_total',
    help: 'Failures of the downstream (reinjection) server, by kind (refused, timeout, protocol) and the command being sent (mail, rcpt, data; connecting counts as mail).',
    labelNames: ['kind', 'step'] as const,
    registers,
  });
  const inFlight = new Gauge({
    name: 'postseal_messages_in_flight',
    help: 'Messages between the DATA command and their reply.',
    registers,
  });
  const connections = new Gauge({
    name: 'postseal_smtp_connections',
    help: 'SMTP connections open on the listeners.',
    registers,
  });
  const connectionsTotal = new Counter({
    name: 'postseal_smtp_connections_total',
    help: 'SMTP connections accepted by the listeners.',
    registers,
  });
  const serviceConnections = new Gauge({
    name: 'postseal_service_connections',
    help: 'Connections open on the side services, by service (policy, srs).',
    labelNames: ['service'] as const,
    registers,
  });
  const loop = registerEventLoopDelay(registry);
  // Present at zero from the start, so that rate() and alerts see the first failure.
  for (const kind of KINDS) for (const step of STEPS) downstreamFailures.inc(failureLabels(kind, step), 0);
  for (const service of SIDE_SERVICES) serviceConnections.set({ service }, 0);

  const telemetry: Telemetry = {
    messageDone(r: MessageReport) {
      messages.inc({ bank: r.bank, verdict: r.verdict, reply: `${r.replyClass}xx` });
      messageSeconds.observe({ bank: r.bank }, r.durationMs / 1000);
      if (r.sizeBytes !== undefined) messageBytes.observe({ bank: r.bank }, r.sizeBytes);
      for (const stage in r.timings) stageSeconds.observe({ stage }, r.timings[stage] / 1000);
      for (const f of r.findings) findings.inc({ stage: stageOfFinding(f.code), code: f.code });
    },
    downstreamFailed(kind, step) {
      downstreamFailures.inc(failureLabels(kind, step));
    },
    dnsQuery(type, result, ms, cached) {
      dnsLookups.inc({ type, result, cache: cached ? 'hit' : 'miss' });
      if (!cached) dnsSeconds.observe({ type, result }, ms / 1000);
    },
    inFlight(delta) {
      inFlight.inc(delta);
    },
    connection(delta) {
      connections.inc(delta);
      if (delta > 0) connectionsTotal.inc();
      loop.busy(delta);
    },
    serviceConnection(service, delta) {
      serviceConnections.inc({ service }, delta);
      loop.busy(delta);
    },
  };
  return { registry, telemetry };
}

function failureLabels(kind: DownstreamFailureKind, step: DownstreamStep) {
  return { kind: kind.slice('REINJECT_'.length).toLowerCase(), step: step.toLowerCase() };
}
