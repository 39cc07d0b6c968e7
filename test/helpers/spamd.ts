/**
 * A real spamd (Debian's spamd + spamassassin packages, scripts/install-test-deps.sh) on a free
 * loopback port and a unix socket, as a child process in a temp dir: --local (no network
 * tests), no user preferences, and a minimal configuration of its own instead of the 1000-odd
 * shipped rules, so that it starts in well under a second: the Check plugin (without it no rule
 * runs), the shipped 10_default_prefs.cf (the REPORT template the client parses), GTUBE as
 * SpamAssassin ships it (1000 points), and one rule the tests aim at the middle levels:
 * TAG_SUBJECT_POINTS points for a Subject holding TAG_SUBJECT. Bayes and auto-learning are
 * off, so nothing is written outside the temp dir. start() rejects when spamd is missing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './redis-server';

/** The GTUBE test string (SpamAssassin's 20_body_tests.cf); rspamd knows it too. */
export const GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X';
/** A Subject holding this scores TAG_SUBJECT_POINTS, with spamd (this file) and rspamd (rspamd.ts). */
export const TAG_SUBJECT = 'postseal-tag-test';
export const TAG_SUBJECT_POINTS = 3.5;
/** spamd's required_score in this configuration. */
export const SPAMD_REQUIRED = 5;

export interface Spamd {
  readonly host: string;
  readonly port: number;
  readonly socket: string;
  /** SIGKILL, as a crash would. */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

const RULES = `# postseal tests: the rules spamd runs
body GTUBE /XJS\\*C4JDBQADN1\\.NSBN3\\*2IDNEN\\*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL\\*C\\.34X/
describe GTUBE Generic Test for Unsolicited Bulk Email
tflags GTUBE userconf noautolearn
score GTUBE 1000
header POSTSEAL_TAG_SUBJECT Subject =~ /${TAG_SUBJECT.replace(/-/g, '\\-')}/
describe POSTSEAL_TAG_SUBJECT postseal test rule
score POSTSEAL_TAG_SUBJECT ${TAG_SUBJECT_POINTS}
required_score ${SPAMD_REQUIRED}
use_bayes 0
bayes_auto_learn 0
use_auto_whitelist 0
util_rb_tld test org net com
`;

export async function startSpamd(): Promise<Spamd> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'postseal-spamd-'));
  for (const d of ['rules', 'site', 'home']) mkdirSync(path.join(dir, d));
  writeFileSync(path.join(dir, 'site', 'init.pre'), 'loadplugin Mail::SpamAssassin::Plugin::Check\n');
  copyFileSync('/usr/share/spamassassin/10_default_prefs.cf', path.join(dir, 'rules', '10_default_prefs.cf'));
  writeFileSync(path.join(dir, 'rules', '50_postseal_test.cf'), RULES);
  const socket = path.join(dir, 'spamd.sock');
  const port = await freePort();
  // Run as root, spamd changes to -u's user for its children, which must read the configuration.
  for (const p of [dir, path.join(dir, 'rules'), path.join(dir, 'site'), path.join(dir, 'home')]) chmodSync(p, 0o755);
  const args = [
    '--local',
    '--syslog=stderr',
    '--nouser-config',
    `--listen=127.0.0.1:${port}`,
    `--listen=${socket}`,
    '--socketmode=0666',
    `--configpath=${path.join(dir, 'rules')}`,
    `--siteconfigpath=${path.join(dir, 'site')}`,
    `--helper-home-dir=${path.join(dir, 'home')}`,
    `--pidfile=${path.join(dir, 'spamd.pid')}`,
    '--min-children=1',
    '--max-children=2',
    ...(process.getuid?.() === 0 ? ['-u', 'nobody'] : []),
  ];
  const child = await launch(args);
  let stopped = false;
  const end = async (signal: NodeJS.Signals) => {
    if (stopped) return;
    stopped = true;
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      // The whole process group: spamd's children and rspamd's workers go too, also on SIGKILL.
      killGroup(child, signal);
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  return { host: '127.0.0.1', port, socket, kill: () => end('SIGKILL'), stop: () => end('SIGTERM') };
}

function launch(args: string[]): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn('spamd', args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`spamd did not start: ${out}`));
    }, 20000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`spamd could not be started (${err.message}); install the Debian packages spamd and spamassassin (scripts/install-test-deps.sh)`));
    });
    const onExit = (code: number | null) => {
      clearTimeout(timer);
      reject(new Error(`spamd exited ${code}: ${out}`));
    };
    child.on('exit', onExit);
    const onData = (d: Buffer) => {
      out += d.toString();
      if (!out.includes('server successfully spawned child process')) return;
      clearTimeout(timer);
      child.off('exit', onExit);
      // Its later log lines are read and dropped, so that a full pipe never blocks it.
      child.stderr!.off('data', onData);
      child.stderr!.resume();
      resolve(child);
    };
    child.stderr!.on('data', onData);
  });
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, signal);
  } catch {
    child.kill(signal);
  }
}
