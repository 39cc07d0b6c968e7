/**
 * Runs the built `postseal` command (dist/, made by `npm test`'s pretest build) as a child
 * process on Node 24, for exit codes, signals and output.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import path from 'node:path';

export const root = path.resolve(__dirname, '../..');
export const nodeBin = path.join(root, 'node_modules/.bin/node');
export const cliMain = path.join(root, 'dist/cli/main.js');

/** `env`: added to this process's (e.g. POSTSEAL_CONFIG). */
export function runCli(args: string[], input?: string, env?: Record<string, string>): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(nodeBin, [cliMain, ...args], { encoding: 'utf8', input, timeout: 30000, env: { ...process.env, ...env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export interface Daemon {
  proc: ChildProcessWithoutNullStreams;
  lines: Record<string, unknown>[];
  waitFor(pred: (l: Record<string, unknown>) => boolean, ms?: number): Promise<Record<string, unknown>>;
  exited: Promise<number | null>;
  /** What it wrote to stderr (read as it comes, so a chatty daemon never blocks on a full pipe). */
  stderr(): string;
}

/** `nodeArgs`: options for node itself, before the script (a cluster's workers inherit them); `env`: added to this process's. */
export function startDaemon(configFile: string, opts: { nodeArgs?: string[]; env?: Record<string, string>; args?: string[]; command?: string[] } = {}): Daemon {
  // `command`: what runs instead of node and dist/cli/main.js (e.g. an installed bin/postseal).
  const [bin, ...pre] = opts.command ?? [nodeBin, ...(opts.nodeArgs ?? []), cliMain];
  const proc = spawn(bin, [...pre, 'start', '--config', configFile, ...(opts.args ?? [])], { env: { ...process.env, ...opts.env } });
  const lines: Record<string, unknown>[] = [];
  let buf = '';
  proc.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        lines.push(JSON.parse(line));
      } catch {
        lines.push({ raw: line });
      }
    }
  });
  let err = '';
  proc.stderr.on('data', (d: Buffer) => {
    if (err.length < 65536) err += d.toString();
  });
  let exitAt = 0;
  const exited = new Promise<number | null>((resolve) =>
    proc.on('exit', (code) => {
      exitAt = Date.now();
      resolve(code);
    }),
  );
  return {
    proc,
    lines,
    exited,
    stderr: () => err,
    async waitFor(pred, ms = 15000) {
      const end = Date.now() + ms;
      const t0 = Date.now();
      for (;;) {
        const hit = lines.find(pred);
        if (hit) return hit;
        // Said with what the process wrote and whether it still runs: a bare timeout told nothing (a CI run under load saw `got: []`).
        // Output still in the pipe may come after 'exit': a second's grace.
        const gone = exitAt > 0;
        if (Date.now() > end || (gone && Date.now() - exitAt > 1000)) {
          const state = gone ? `exited ${proc.exitCode ?? proc.signalCode}` : `still running after ${Date.now() - t0} ms`;
          throw new Error(`log line not seen (${state}); got: ${JSON.stringify(lines).slice(0, 2000)}; stderr: ${err.slice(0, 2000)}`);
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    },
  };
}
