/**
 * The content path's scanners (bench/README.md, "Content path"): one clamd and one spamd, private
 * instances in the benchmark's folder, shared by postseal and amavisd-new so that the scanners'
 * own work is the same for both and is reported apart (their CPU is read from /proc by pid).
 *
 * The start-up code (launchClamd, launchSpamd) is shared with the tests' helpers
 * (test/helpers/clamd.ts, spamd.ts import it from here: bench/tsconfig.json's rootDir keeps the
 * bench from importing test/). Both are configured small: clamd with a tiny signature database (EICAR
 * by its MD5, as ClamAV's own database has it: none can be downloaded here), spamd --local
 * with a minimal rule set (the Check plugin, Debian's 10_default_prefs.cf, GTUBE), so both
 * start in about a second. The figure is then the filters' cost of asking the scanners, not
 * the scanners' rule sets.
 *
 * spamd listens on 127.0.0.1:783 when we run as root: amavisd-new's SpamdClient
 * (Amavis/SpamControl/SpamdClient.pm, 2.13) connects there and nowhere else. Failures: start
 * rejects when clamd or spamd is missing or does not come up within 20 s.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { stopChild } from './postfix-tools';
import { freePort } from './proc';

/** The EICAR test file, put together here so that this file is not itself "infected". */
export const EICAR = `X5O!P%@AP[4\\PZX54(P^)7CC)7}$${'EICAR-STANDARD-ANTIVIRUS'}-TEST-FILE!$H+H*`;
/** SpamAssassin's GTUBE test string. */
export const GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X';
/** A rule of the bench's spamd that every bench message hits (0.1 points): X-Spam-Status names it. */
export const BENCH_RULE = 'BENCH_SUBJECT';
/** amavisd-new's SpamdClient has this address built in. */
const AMAVISD_SPAMD_PORT = 783;

export interface Scanners {
  clamd: { socket: string; pid: number };
  spamd: { host: string; port: number; pid: number };
  stop(): Promise<void>;
}

/** `dir`: the work folder (made world-traversable: spamd's children run as nobody); the scanners get clamd/ and spamd/ in it. */
export async function startScanners(dir: string, log: (line: string) => void): Promise<Scanners> {
  const clamd = await startClamd(path.join(dir, 'clamd'));
  try {
    const spamd = await startSpamd(path.join(dir, 'spamd'));
    log(`scanners: clamd on ${clamd.socket} (pid ${clamd.child.pid}), spamd on 127.0.0.1:${spamd.port} (pid ${spamd.child.pid})`);
    return {
      clamd: { socket: clamd.socket, pid: clamd.child.pid! },
      spamd: { host: '127.0.0.1', port: spamd.port, pid: spamd.child.pid! },
      async stop() {
        await Promise.all([clamd.stop(), spamd.stop()]);
      },
    };
  } catch (err) {
    await clamd.stop();
    throw err;
  }
}

interface Running {
  child: ChildProcess;
  stop(): Promise<void>;
}

function exitOf(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
}

async function startClamd(dir: string): Promise<Running & { socket: string }> {
  const db = path.join(dir, 'db');
  writeEicarDatabase(db);
  const socket = path.join(dir, 'clamd.sock');
  const logFile = path.join(dir, 'clamd.log');
  const configFile = path.join(dir, 'clamd.conf');
  // MaxThreads as Debian's clamd.conf (12): a queue of 16 sessions waits in clamd, as it would.
  const lines = ['Foreground yes', `DatabaseDirectory ${db}`, `LocalSocket ${socket}`, 'LocalSocketMode 666', `LogFile ${logFile}`, 'SelfCheck 0', 'MaxThreads 12'];
  writeFileSync(configFile, `${lines.join('\n')}\n`);
  const child = await launchClamd(configFile, socket, logFile);
  return { child, socket, stop: () => stopChild(child, exitOf(child), 'SIGTERM', 10000) };
}

/** A signature database (folder `dir`) that finds EICAR by its MD5 and size, as ClamAV's own does; clamd names it Win.Test.EICAR_HDB-1.UNOFFICIAL. */
export function writeEicarDatabase(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const eicarMd5 = createHash('md5').update(EICAR).digest('hex');
  writeFileSync(path.join(dir, 'eicar.hdb'), `${eicarMd5}:${EICAR.length}:Win.Test.EICAR_HDB-1\n`);
}

/** Starts clamd with `configFile` (Foreground yes) and resolves once it answers PING on `socket`. */
export async function launchClamd(configFile: string, socket: string, logFile: string): Promise<ChildProcess> {
  rmSync(socket, { force: true });
  const child = spawn('clamd', ['--foreground', `--config-file=${configFile}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const failed = new Promise<never>((_, reject) => {
    child.on('error', (err) => reject(new Error(`clamd could not be started (${err.message}); install the Debian package clamav-daemon (scripts/install-test-deps.sh)`)));
    child.on('exit', (code) => reject(new Error(`clamd exited ${code}: ${stderr}\n${existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''}`)));
  });
  failed.catch(() => undefined);
  const deadline = Date.now() + 15000;
  for (;;) {
    const up = await Promise.race([pong(socket), failed]);
    if (up) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`clamd did not answer PING within 15 s: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  child.removeAllListeners('exit');
  return child;
}

/** PONG on the unix socket: clamd has loaded its database and accepts commands. */
function pong(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ path: socket });
    let answer = '';
    const timer = setTimeout(() => s.destroy(), 1000);
    s.on('connect', () => s.write('zPING\0'));
    s.on('data', (d) => (answer += d.toString()));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      resolve(answer === 'PONG\0');
    });
  });
}

const SPAMD_RULES = `# postseal bench: the rules spamd runs
body GTUBE /XJS\\*C4JDBQADN1\\.NSBN3\\*2IDNEN\\*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL\\*C\\.34X/
describe GTUBE Generic Test for Unsolicited Bulk Email
tflags GTUBE userconf noautolearn
score GTUBE 1000
header BENCH_SUBJECT Subject =~ /^Benchmark message/
describe BENCH_SUBJECT the bench's messages: X-Spam-Status names it when spamd was asked
score BENCH_SUBJECT 0.1
required_score 5
use_bayes 0
bayes_auto_learn 0
use_auto_whitelist 0
`;

async function startSpamd(dir: string): Promise<Running & { port: number }> {
  mkdirSync(dir, { recursive: true });
  chmodSync(path.dirname(dir), 0o755);
  const root = process.getuid?.() === 0;
  const port = root ? AMAVISD_SPAMD_PORT : await freePort();
  const args = [
    ...spamdConfigArgs(dir, SPAMD_RULES),
    `--listen=127.0.0.1:${port}`,
    // A fixed pool: spamd's scaling of children would fork and reap during a cell.
    '--min-children=4',
    '--max-children=4',
    '--min-spare=0',
    ...(root ? ['-u', 'nobody'] : []),
  ];
  const child = await launchSpamd(args);
  const exited = exitOf(child);
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    killGroup(child, 'SIGTERM');
    await exited;
  };
  return { child, port, stop };
}

/**
 * A minimal spamd configuration in `dir` (rules/, site/, home/): the Check plugin, Debian's
 * 10_default_prefs.cf (the REPORT template) and `rules`; the arguments that make spamd use only
 * it (--local, no user preferences, log to stderr). As root spamd's children run as -u's user,
 * who must read it: the folders are made world-readable.
 */
export function spamdConfigArgs(dir: string, rules: string): string[] {
  for (const d of ['rules', 'site', 'home']) mkdirSync(path.join(dir, d), { recursive: true });
  writeFileSync(path.join(dir, 'site', 'init.pre'), 'loadplugin Mail::SpamAssassin::Plugin::Check\n');
  copyFileSync('/usr/share/spamassassin/10_default_prefs.cf', path.join(dir, 'rules', '10_default_prefs.cf'));
  writeFileSync(path.join(dir, 'rules', '50_rules.cf'), rules);
  for (const p of [dir, path.join(dir, 'rules'), path.join(dir, 'site'), path.join(dir, 'home')]) chmodSync(p, 0o755);
  return [
    '--local',
    '--syslog=stderr',
    '--nouser-config',
    `--configpath=${path.join(dir, 'rules')}`,
    `--siteconfigpath=${path.join(dir, 'site')}`,
    `--helper-home-dir=${path.join(dir, 'home')}`,
    `--pidfile=${path.join(dir, 'spamd.pid')}`,
  ];
}

/** Starts spamd (its own process group) and resolves once it has spawned a child. */
export function launchSpamd(args: string[]): Promise<ChildProcess> {
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

/** The whole process group: spamd's children (and rspamd's workers) go too, also on SIGKILL. */
export function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, signal);
  } catch {
    child.kill(signal);
  }
}
