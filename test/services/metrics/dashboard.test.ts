import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createProcessMetrics } from '../../../src/services/metrics/registry';

const file = path.resolve(__dirname, '../../../examples/grafana/postseal-dashboard.json');
const dashboard = JSON.parse(readFileSync(file, 'utf8')) as { panels: { targets: { expr: string }[] }[] };
const exprs = dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr));

describe('the example Grafana dashboard', () => {
  it('queries only metrics that postseal exports', async () => {
    const exported = new Set((await createProcessMetrics().registry.getMetricsAsJSON()).map((m) => m.name));
    const used = new Set(exprs.flatMap((e) => e.match(/postseal_[a-z_]+/g) ?? []).map((n) => n.replace(/_(bucket|sum|count)$/, '')));
    expect(used.size).toBeGreaterThanOrEqual(7);
    for (const name of used) expect(exported).toContain(name);
  });

  it('has PromQL that promtool parses, once Grafana variables are filled in', () => {
    const rules = exprs.map((e, i) => `      - record: postseal:dashboard_${i}\n        expr: '${e.replaceAll('$__rate_interval', '5m').replaceAll('$instance', '.*')}'\n`);
    const dir = mkdtempSync(path.join(tmpdir(), 'postseal-dashboard-'));
    writeFileSync(path.join(dir, 'rules.yml'), `groups:\n  - name: dashboard\n    rules:\n${rules.join('')}`);
    // promtool exits 1 on a PromQL syntax error; a missing promtool throws ENOENT.
    expect(execFileSync('promtool', ['check', 'rules', path.join(dir, 'rules.yml')], { encoding: 'utf8' })).toContain(`SUCCESS: ${exprs.length} rules found`);
  });
});
