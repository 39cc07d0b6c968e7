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
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return {
    proc,
    lines,
    exited,
    async waitFor(pred, ms = 15000) {
      const end = Date.now() + ms;
      for (;;) {
        const hit = lines.find(pred);
        if (hit) return hit;
        if (Date.now() > end) throw new Error(`log line not seen; got: ${JSON.stringify(lines).slice(0, 2000)}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
  };
}
