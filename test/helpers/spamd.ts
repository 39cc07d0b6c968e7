/**
 * A real spamd (Debian's spamd + spamassassin packages, scripts/install-test-deps.sh) on a free
 * loopback port and a unix socket, as a child process in a temp dir: --local (no network
 * tests), no user preferences, and a minimal configuration of its own instead of the 1000-odd
 * shipped rules, so that it starts in well under a second: the Check plugin (without it no rule
 * runs), the shipped 10_default_prefs.cf (the REPORT template the client parses), GTUBE as
 * SpamAssassin ships it (1000 points), and one rule the tests aim at the middle levels:
 * TAG_SUBJECT_POINTS points for a Subject holding TAG_SUBJECT. Bayes and auto-learning are
 * off, so nothing is written outside the temp dir. start() rejects when spamd is missing.
 * The configuration files and the start-up are shared with the benchmark (bench/scanners.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { killGroup, launchSpamd, spamdConfigArgs } from '../../bench/scanners';
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
  const socket = path.join(dir, 'spamd.sock');
  const port = await freePort();
  const args = [
    ...spamdConfigArgs(dir, RULES),
    `--listen=127.0.0.1:${port}`,
    `--listen=${socket}`,
    '--socketmode=0666',
    '--min-children=1',
    '--max-children=2',
    ...(process.getuid?.() === 0 ? ['-u', 'nobody'] : []),
  ];
  const child = await launchSpamd(args);
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
