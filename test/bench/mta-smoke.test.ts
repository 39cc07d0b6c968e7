/**
 * `npm run bench:mta -- --smoke`: a private Postfix alone and with postseal as its content
 * filter (examples/postfix's dual path), one 2 KB message each through to smtp-sink and
 * verified by Mail::DKIM before one short timed run (bench/mta/run.ts). It keeps the
 * whole-MTA benchmark working between full runs: it fails when the dual path stops
 * delivering or signing, or the timing stops counting, never on a figure. A second run does
 * the same for the milter set-up with `--pace` (a paced run, its CPU and latency columns). Needs root and the
 * Debian packages postfix and libmail-dkim-perl, like the e2e suite.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { nodeBin, root } from '../helpers/cli';

it('the whole-MTA smoke run verifies the signatures of both set-ups and times a run of each', async () => {
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = execFile(nodeBin, [path.join(root, 'dist/bench/mta/run.js'), '--smoke'], { cwd: root, timeout: 100_000 }, (_err, out, err) =>
      resolve({ code: child.exitCode, stdout: out, stderr: err }),
    );
  });
  expect({ code, stderr: code === 0 ? '' : stderr }).toEqual({ code: 0, stderr: '' });
  // The cells table: "| set-up | KB | reuse | msg/s per run | median | Postfix CPU | filter CPU | load |".
  const rows = stdout
    .split('\n')
    .filter((l) => /^\| [a-z-]+ \| 2 \| yes \|/.test(l))
    .map((l) => l.split('|').map((c) => c.trim()));
  expect(rows.map((r) => r[1])).toEqual(['postfix', 'postseal-filter']);
  for (const r of rows) expect(Number(r[5])).toBeGreaterThan(0);
  // Postseal's own processes did the signing: their CPU is counted; Postfix alone has none.
  expect(rows.map((r) => r[7] !== '–')).toEqual([false, true]);
}, 120_000);

it('the paced smoke run of the milter set-up verifies its signatures and reports CPU and latency at the pace', async () => {
  const args = [path.join(root, 'dist/bench/mta/run.js'), '--smoke', '--setups', 'postseal-milter', '--pace', '20', '--seconds', '1'];
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = execFile(nodeBin, args, { cwd: root, timeout: 100_000 }, (_err, out, err) => resolve({ code: child.exitCode, stdout: out, stderr: err }));
  });
  expect({ code, stderr: code === 0 ? '' : stderr }).toEqual({ code: 0, stderr: '' });
  // "| set-up, paced | KB | reuse | msg/s | messages | Postfix CPU ... | filter CPU ... | p50 / p99 ms per run |"
  const row = stdout
    .split('\n')
    .find((l) => /^\| postseal-milter \| 2 \| yes \| 20 \|/.test(l))
    ?.split('|')
    .map((c) => c.trim());
  expect(row).toBeDefined();
  expect(Number(row![5])).toBeGreaterThan(0);
  // "2.41 (2.41)": the filter's CPU per message, counted; "4.1 / 9.8": the latency.
  expect(row![7]).toMatch(/^\d+\.\d+ \(\d+\.\d+\)$/);
  expect(row![8]).toMatch(/^\d+(\.\d+)? \/ \d+(\.\d+)?$/);
}, 120_000);
