/**
 * The content path's scanners (bench/README.md, "Content path"): one clamd and one spamd, private
 * instances in the benchmark's folder, shared by postseal and amavisd-new so that the scanners'
 * own work is the same for both and is reported apart (their CPU is read from /proc by pid).
 *
 * They start the way the tests start theirs (test/helpers/clamd.ts, spamd.ts), which the bench
 * cannot import (bench/tsconfig.json's rootDir): clamd with a tiny signature database (EICAR
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
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
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
  mkdirSync(db, { recursive: true });
  const eicarMd5 = createHash('md5').update(EICAR).digest('hex');
  writeFileSync(path.join(db, 'bench.hdb'), `${eicarMd5}:${EICAR.length}:Win.Test.EICAR_HDB-1\n`);
  const socket = path.join(dir, 'clamd.sock');
  const logFile = path.join(dir, 'clamd.log');
  const configFile = path.join(dir, 'clamd.conf');
  // MaxThreads as Debian's clamd.conf (12): a queue of 16 sessions waits in clamd, as it would.
  const lines = ['Foreground yes', `DatabaseDirectory ${db}`, `LocalSocket ${socket}`, 'LocalSocketMode 666', `LogFile ${logFile}`, 'SelfCheck 0', 'MaxThreads 12'];
  writeFileSync(configFile, `${lines.join('\n')}\n`);
  const child = spawn('clamd', ['--foreground', `--config-file=${configFile}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = exitOf(child);
  const gone = new Promise<never>((_, reject) => {
    child.once('error', (err) => reject(new Error(`clamd could not be started (${err.message}): Debian package clamav-daemon`)));
    void exited.then(() => reject(new Error(`clamd exited: ${stderr} ${existsSync(logFile) ? readFileSync(logFile, 'utf8').slice(-500) : ''}`)));
  });
  gone.catch(() => undefined);
  const deadline = Date.now() + 20000;
  while (!(await Promise.race([pong(socket), gone]))) {
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`clamd did not answer PING within 20 s: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, socket, stop: () => stopChild(child, exited, 'SIGTERM', 10000) };
}

/** PONG on the unix socket: clamd has loaded its database. */
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
  for (const d of ['rules', 'site', 'home']) mkdirSync(path.join(dir, d), { recursive: true });
  writeFileSync(path.join(dir, 'site', 'init.pre'), 'loadplugin Mail::SpamAssassin::Plugin::Check\n');
  copyFileSync('/usr/share/spamassassin/10_default_prefs.cf', path.join(dir, 'rules', '10_default_prefs.cf'));
  writeFileSync(path.join(dir, 'rules', '50_bench.cf'), SPAMD_RULES);
  const root = process.getuid?.() === 0;
  // As root spamd's children run as nobody, who must read the configuration.
  for (const p of [path.dirname(dir), dir, path.join(dir, 'rules'), path.join(dir, 'site'), path.join(dir, 'home')]) chmodSync(p, 0o755);
  const port = root ? AMAVISD_SPAMD_PORT : await freePort();
  const args = [
    '--local',
    '--syslog=stderr',
    '--nouser-config',
    `--listen=127.0.0.1:${port}`,
    `--configpath=${path.join(dir, 'rules')}`,
    `--siteconfigpath=${path.join(dir, 'site')}`,
    `--helper-home-dir=${path.join(dir, 'home')}`,
    `--pidfile=${path.join(dir, 'spamd.pid')}`,
    // A fixed pool: spamd's scaling of children would fork and reap during a cell.
    '--min-children=4',
    '--max-children=4',
    '--min-spare=0',
    ...(root ? ['-u', 'nobody'] : []),
  ];
  const child = spawn('spamd', args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  const exited = exitOf(child);
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      process.kill(-child.pid!, 'SIGKILL');
      reject(new Error(`spamd did not start within 20 s: ${out.slice(-500)}`));
    }, 20000);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`spamd could not be started (${err.message}): Debian packages spamd, spamassassin`));
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`spamd exited: ${out.slice(-500)}`));
    });
    const onData = (d: Buffer) => {
      out += d.toString();
      if (!out.includes('server successfully spawned child process')) return;
      clearTimeout(timer);
      // Its later log lines are read and dropped, so that a full pipe never blocks it.
      child.stderr!.off('data', onData);
      child.stderr!.resume();
      resolve();
    };
    child.stderr!.on('data', onData);
  });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    // The whole process group: its children go too.
    process.kill(-child.pid!, 'SIGTERM');
    await exited;
  };
  return { child, port, stop };
}
