/**
 * `npm run bench:mta -- --profile`: postseal's set-ups run under `node --cpu-prof` (the
 * primary and every worker write a .cpuprofile; the cluster passes the flag on), and after the
 * set-up stops their profiles are summarised as bench/profile.ts does for the proxy bench,
 * the workers merged, with each role's main-thread busy time per message: the CPU a message
 * costs at Postfix's pace, to compare with the proxy bench's profile (issue 18, item 3).
 * Messages are counted from postseal's log (one line per message, STYLE.md §12).
 */
import { copyFileSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { busyMs, summarize, type CpuProfile } from '../profile';
import { ROOT } from '../postseal';

/** The summary of every profile in `dir`; `primaryPid` tells the primary's from the workers'. */
export function summarizeMtaProfiles(dir: string, primaryPid: number, logFile: string, name: string): string {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  if (!files.length) return `${name}: postseal wrote no CPU profile into ${dir}`;
  const messages = readFileSync(logFile, 'utf8').split('"msg":"message"').length - 1;
  const workers: CpuProfile[] = [];
  const lines: string[] = [];
  for (const f of files) {
    const profile = JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as CpuProfile;
    // CPU.<date>.<time>.<pid>.<tid>.<seq>.cpuprofile
    const pid = Number(f.split('.')[3]);
    const role = pid === primaryPid ? 'primary' : `worker ${pid}`;
    const ms = busyMs(profile);
    lines.push(`- ${role}: main thread busy ${ms.toFixed(0)} ms, ${messages ? (ms / messages).toFixed(3) : '–'} ms per message of all ${messages}`);
    if (pid !== primaryPid) workers.push(profile);
    copyFileSync(path.join(dir, f), path.join(ROOT, `dist/bench/mta-${name}-${role.replace(' ', '-')}.cpuprofile`));
  }
  const merged: CpuProfile = { nodes: workers.flatMap((p) => p.nodes) };
  return [`### ${name}: CPU profile (workers merged)`, '', ...lines, '', summarize(merged), '', `Profiles: dist/bench/mta-${name}-*.cpuprofile`].join('\n');
}
