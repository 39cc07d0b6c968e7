/**
 * `npm run bench -- --profile [--paths P] [--sizes KB] [--reuse no]`: one postseal process
 * under node --cpu-prof while smtp-source sends messages (20 KB unless told) at c=16 (over
 * reused connections unless told) to one path (the issue asks for originating, the
 * default), then the
 * profile's self time by function and by area (our code, each package, Node internals,
 * GC), as Markdown for bench/README.md. The raw .cpuprofile is kept for DevTools.
 */
import { copyFileSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ENVELOPE, makeMessage, type BenchKeys } from './messages';
import { runSmtpSource } from './postfix-tools';
import { PATHS, ROOT, startPostseal, type PathName } from './postseal';
import { startScanners } from './scanners';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

/** What node --cpu-prof writes (the fields used here). */
export interface CpuProfile {
  nodes: ProfileNode[];
  samples?: number[];
  timeDeltas?: number[];
}

/** The main thread's busy time in a profile, ms: the time of every sample not in (idle). */
export function busyMs(profile: CpuProfile): number {
  const idle = new Set(profile.nodes.filter((n) => n.callFrame.functionName === '(idle)').map((n) => n.id));
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  let us = 0;
  // A delta is the time before its sample; the time until the next one belongs to the sample.
  for (let i = 0; i < samples.length; i++) if (!idle.has(samples[i])) us += deltas[i + 1] ?? 0;
  return us / 1000;
}

export interface ProfileRun {
  dir: string;
  keys: BenchKeys;
  sinkPort: number;
  dnsPort: number;
  smtpSource: string;
  seconds: number;
  path: PathName;
  reuse: boolean;
  sizeKb: number;
}

export async function profilePath(opts: ProfileRun): Promise<string> {
  const spec = PATHS.find((p) => p.name === opts.path)!;
  const dir = path.join(opts.dir, 'profile');
  const profDir = path.join(dir, 'cpuprofile');
  mkdirSync(profDir, { recursive: true });
  const msg = await makeMessage(dir, opts.sizeKb, spec.kind, opts.keys);
  // The content path's clamd and spamd (bench/scanners.ts); their CPU is not in the profile.
  const scanners = spec.content ? await startScanners(opts.dir, () => undefined) : null;
  try {
    return await profileWith(
      opts,
      spec,
      dir,
      profDir,
      msg.file,
      scanners ? { clamdSocket: scanners.clamd.socket, spamdHost: scanners.spamd.host, spamdPort: scanners.spamd.port } : undefined,
    );
  } finally {
    await scanners?.stop();
  }
}

async function profileWith(
  opts: ProfileRun,
  spec: (typeof PATHS)[number],
  dir: string,
  profDir: string,
  messageFile: string,
  scanners: Parameters<typeof startPostseal>[0]['scanners'],
): Promise<string> {
  const ps = await startPostseal({
    scanners,
    dir,
    keys: opts.keys,
    sinkPort: opts.sinkPort,
    dnsPort: opts.dnsPort,
    workers: 1,
    paths: [spec.name],
    nodeArgs: ['--cpu-prof', '--cpu-prof-dir', profDir],
  });
  let mps = 0;
  let messages = 0;
  try {
    const load = { port: ps.ports[spec.name], file: messageFile, from: spec.from, to: ENVELOPE.to, concurrency: 16, reuse: opts.reuse, timeoutMs: 600000 };
    const probe = await runSmtpSource(opts.smtpSource, { ...load, messages: 500 });
    const n = Math.round(probe.mps * opts.seconds);
    const run = await runSmtpSource(opts.smtpSource, { ...load, messages: n });
    mps = run.mps;
    messages = 500 + n;
  } finally {
    await ps.stop();
  }
  const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`postseal wrote no CPU profile into ${profDir}`);
  const kept = path.join(ROOT, `dist/bench/${spec.name}-${opts.sizeKb}k-c16${opts.reuse ? '' : '-noreuse'}.cpuprofile`);
  copyFileSync(path.join(profDir, file), kept);
  const profile = JSON.parse(readFileSync(kept, 'utf8')) as CpuProfile;
  return `${summarize(profile)}\n\n${spec.name} path, ${opts.sizeKb} KB, c=16, ${opts.reuse ? 'reused connections' : 'a connection per message'}, one process: ${Math.round(mps)} msg/s while profiled, main thread busy ${(busyMs(profile) / messages).toFixed(3)} ms per message. Profile: ${path.relative(ROOT, kept)}`;
}

export function summarize(profile: CpuProfile, top = 25): string {
  const byFunction = new Map<string, number>();
  const byArea = new Map<string, number>();
  let total = 0;
  for (const node of profile.nodes) {
    const hits = node.hitCount ?? 0;
    const { functionName, url, lineNumber } = node.callFrame;
    if (!hits || functionName === '(idle)') continue;
    total += hits;
    const where = url ? `${shortUrl(url)}:${lineNumber + 1}` : '';
    const key = `${functionName || '(anonymous)'} ${where}`.trim();
    byFunction.set(key, (byFunction.get(key) ?? 0) + hits);
    byArea.set(area(url, functionName), (byArea.get(area(url, functionName)) ?? 0) + hits);
  }
  const pct = (n: number) => `${((100 * n) / total).toFixed(1)} %`;
  const rows = (m: Map<string, number>, n: number) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, v]) => `| ${pct(v)} | \`${k.replace(/\|/g, '\\|')}\` |`);
  return ['| self (busy %) | function |', '| ---: | --- |', ...rows(byFunction, top), '', '| self (busy %) | area |', '| ---: | --- |', ...rows(byArea, 15)].join('\n');
}

function shortUrl(url: string): string {
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) return url.slice(nm + 'node_modules/'.length);
  const dist = url.indexOf('/dist/');
  if (dist >= 0) return url.slice(dist + 1);
  return url.replace(/^file:\/\//, '');
}

function area(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1];
  if (url.startsWith('node:')) return 'node: internals';
  const dist = /\/dist\/([^/]+(?:\/[^/]+)?)\//.exec(url);
  return dist ? `postseal ${dist[1]}` : url;
}
