import { findingCodes, stageRegistry } from '../../../src/stages/registry';
import { createProcessMetrics, stageOfFinding } from '../../../src/services/metrics/registry';
import { PostsealError } from '../../../src/errors';
import { countDownstreamFailure } from '../../../src/lib/telemetry';

describe('the process metrics', () => {
  it('attributes every finding code to a stage that banks can name', () => {
    const stages: readonly string[] = stageRegistry.map((d) => d.id);
    for (const code of findingCodes) expect(stages).toContain(stageOfFinding(code));
    expect(stageOfFinding('DKIM_VERIFY_PASS')).toBe('dkim-verify');
    expect(stageOfFinding('DKIM_SIGN_SIGNED')).toBe('dkim-sign');
  });

  it('turns a message report into counters and histograms in base units', async () => {
    const { registry, telemetry } = createProcessMetrics();
    telemetry.messageDone({
      bank: 'b',
      verdict: 'tempfail',
      replyClass: '4',
      durationMs: 1500,
      sizeBytes: 2048,
      timings: { spf: 20 },
      findings: [{ code: 'SPF_TEMPERROR', detail: 'x' }],
    });
    const json = await registry.getMetricsAsJSON();
    const values = (name: string) => json.find((m) => m.name === name)!.values;
    const sum = (name: string) => values(name).find((v) => (v as { metricName?: string }).metricName === `${name}_sum`)?.value;
    expect(values('postseal_messages_total')).toEqual([{ labels: { bank: 'b', verdict: 'tempfail', reply: '4xx' }, value: 1 }]);
    expect(values('postseal_findings_total')).toEqual([{ labels: { stage: 'spf', code: 'SPF_TEMPERROR' }, value: 1 }]);
    expect(sum('postseal_message_duration_seconds')).toBe(1.5);
    expect(sum('postseal_stage_duration_seconds')).toBe(0.02);
    expect(sum('postseal_message_size_bytes')).toBe(2048);
  });

  it('lists every downstream failure kind and step at zero before the first failure', async () => {
    const { registry, telemetry } = createProcessMetrics();
    telemetry.downstreamFailed('REINJECT_TIMEOUT', 'RCPT');
    countDownstreamFailure(telemetry, new PostsealError('REINJECT_TLS', 'certificate not trusted'), 'MAIL');
    const values = (await registry.getSingleMetric('postseal_downstream_failures_total')!.get()).values;
    expect(values).toHaveLength(12);
    expect(values.filter((v) => v.value > 0)).toEqual([
      { labels: { kind: 'timeout', step: 'rcpt' }, value: 1 },
      { labels: { kind: 'tls', step: 'mail' }, value: 1 },
    ]);
  });

  it('keeps one registry per call, so two instances in one process do not share counts', async () => {
    const a = createProcessMetrics();
    const b = createProcessMetrics();
    a.telemetry.connection(1);
    expect((await a.registry.getSingleMetric('postseal_smtp_connections_total')!.get()).values[0].value).toBe(1);
    expect((await b.registry.getSingleMetric('postseal_smtp_connections_total')!.get()).values[0]?.value ?? 0).toBe(0);
  });
});
