/**
 * Processes the benchmark starts and watches: free loopback ports, waiting for a greeting,
 * and peak RSS read from /proc (VmHWM, reset per cell through clear_refs), summed over a
 * process and its children so a cluster counts as a whole.
 */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';

/** Ports this process handed out: the kernel may give a closed one again at once (a run failed on two listeners given one port). */
const handedOut = new Set<number>();

export async function freePort(): Promise<number> {
  for (;;) {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
}

/** Resolves once something on the port answers with an SMTP 220 greeting. */
export async function waitForGreeting(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await greets(port)) return;
    if (Date.now() > deadline) throw new Error(`nothing greeted on 127.0.0.1:${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Resolves once something accepts TCP connections on the port (a milter says nothing first). */
export async function waitForListener(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await accepts(port))) {
    if (Date.now() > deadline) throw new Error(`nothing listened on 127.0.0.1:${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function greets(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('data', (d) => {
      socket.end('QUIT\r\n');
      done(d.toString('latin1').startsWith('220'));
    });
  });
}

/** The process and all its descendants. */
export function processTree(pid: number): number[] {
  const all = [pid];
  for (let i = 0; i < all.length; i++) {
    try {
      for (const task of readdirSync(`/proc/${all[i]}/task`)) {
        const children = readFileSync(`/proc/${all[i]}/task/${task}/children`, 'utf8').trim();
        if (children) all.push(...children.split(/\s+/).map(Number));
      }
    } catch {
      // The process ended while we looked.
    }
  }
  return all;
}

function statusKb(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Starts a new peak-RSS window for the process tree (Linux clear_refs "5"). */
export function resetPeakRss(pid: number): void {
  for (const p of processTree(pid)) {
    try {
      writeFileSync(`/proc/${p}/clear_refs`, '5');
    } catch {
      // Without the right to reset, the peak since start is reported: an upper bound.
    }
  }
}

export interface RssReport {
  /** Sum of each process's peak since the last reset: an upper bound of the tree's peak. */
  peakMb: number;
  /** Largest single process's peak. */
  maxProcessPeakMb: number;
  /** Current RSS per process, root first. */
  currentMb: number[];
}

export function readRss(pid: number): RssReport {
  const pids = processTree(pid);
  const peaks = pids.map((p) => statusKb(p, 'VmHWM') / 1024);
  return {
    peakMb: round1(peaks.reduce((a, b) => a + b, 0)),
    maxProcessPeakMb: round1(Math.max(0, ...peaks)),
    currentMb: pids.map((p) => round1(statusKb(p, 'VmRSS') / 1024)),
  };
}

/**
 * CPU seconds (user + system) used so far by the process tree; ticks are 1/100 s on Linux.
 * `reaped` adds what the tree's children that already ended used (cutime + cstime, counted
 * once a parent waited for them): needed for daemons that recycle their processes, as
 * Postfix's master does with smtpd, cleanup and smtp after max_use or max_idle, and for
 * processes that fork short-lived helpers (amavisd-new runs file(1) per message).
 */
export function cpuSeconds(pid: number, opts: { reaped?: boolean } = {}): number {
  let ticks = 0;
  for (const p of processTree(pid)) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      // Fields after the command name, which may itself hold spaces and parentheses.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
      if (opts.reaped) ticks += Number(fields[13]) + Number(fields[14]);
    } catch {
      // The process ended while we looked.
    }
  }
  return ticks / 100;
}

export function round1(n: number): number {
  return Math.round(n * 10) / 10;
}

export function round2(n: number): number {
  return Math.round(n * 100) / 100;
}
