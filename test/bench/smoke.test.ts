/**
 * `npm run bench -- --smoke`: one small cell per path through Postfix's smtp-source and
 * smtp-sink, with the benchmark's own checks before anything is timed (postseal's signatures
 * verify, the inbound Authentication-Results says dkim=pass, nothing 8-bit leaves the 7-bit
 * path, the content path asks its clamd and spamd and refuses EICAR and GTUBE). It keeps the
 * benchmark working between full runs; no figure is judged here.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { nodeBin, root } from '../helpers/cli';

const PATHS = ['inbound', 'originating', 'originating-dual', 'nochecks', 'content'];

it('the benchmark smoke run passes its checks on every path and reports a cell for each', async () => {
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = execFile(nodeBin, [path.join(root, 'dist/bench/run.js'), '--smoke'], { cwd: root, timeout: 100_000 }, (_err, out, err) =>
      resolve({ code: child.exitCode, stdout: out, stderr: err }),
    );
  });
  expect({ code, stderr: code === 0 ? '' : stderr }).toEqual({ code: 0, stderr: '' });
  const rows = stdout.split('\n').filter((l) => /^\| [a-z-]+ \| 2 \| 1 \| yes \|/.test(l));
  expect(rows.map((r) => r.split('|')[1].trim())).toEqual(PATHS);
}, 120_000);
