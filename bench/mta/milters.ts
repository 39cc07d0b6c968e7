/**
 * The two signing milters the whole-MTA benchmark compares postseal with, each a Debian
 * package run in the foreground from a private folder, listening on a loopback port, signing
 * mail from bench.example with the benchmark's RSA-2048 key (relaxed/relaxed), as root drops
 * to the package's own user:
 *
 * - rspamd (package `rspamd`): its own rspamd.conf instead of /etc/rspamd, so only what it
 *   names runs: the C module `dkim` (needed: it provides the signing function to the Lua
 *   plugin; `trusted_only` with no trusted domains keeps it from verifying anything) and the
 *   Lua plugin `dkim_signing`. Every other plugin is unconfigured, and rspamd disables
 *   unconfigured plugins ("disabling unconfigured lua module" in its log); no rules file, no
 *   Redis, no statistics, no controller; logging at Debian's default level (info). One worker: the proxy in milter mode scanning itself
 *   (self_scan), `count` processes. DNS goes to the benchmark's server only.
 * - OpenDKIM (package `opendkim`): Mode s, one Domain/Selector/KeyFile, InternalHosts
 *   127.0.0.1 (the default, written out: whose mail it signs).
 *
 * A daemon that does not listen within a minute fails the set-up with the tail of its log.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { OWN_DOMAIN, type BenchKeys } from '../messages';
import { stopChild } from '../postfix-tools';
import { freePort, waitForListener } from '../proc';

export interface Daemon {
  readonly pid: number;
  readonly port: number;
  stop(): Promise<void>;
}

export interface MilterStart {
  dir: string;
  keys: BenchKeys;
  dnsPort: number;
  /** rspamd's proxy processes. */
  processes: number;
}

const RSPAMD = '/usr/bin/rspamd';
const OPENDKIM = '/usr/sbin/opendkim';

function userIds(user: string): { uid: number; gid: number } | null {
  try {
    return { uid: Number(execFileSync('id', ['-u', user]).toString()), gid: Number(execFileSync('id', ['-g', user]).toString()) };
  } catch {
    return null;
  }
}

function unavailable(bin: string, pkg: string, user: string): string | null {
  if (!existsSync(bin)) return `${bin} not installed (Debian package ${pkg})`;
  if (process.getuid?.() !== 0) return `${pkg} is started as root here (it switches to its own user)`;
  if (!userIds(user)) return `no ${user} user (the ${pkg} package creates it)`;
  return null;
}

export const rspamdUnavailable = () => unavailable(RSPAMD, 'rspamd', '_rspamd');
export const opendkimUnavailable = () => unavailable(OPENDKIM, 'opendkim', 'opendkim');

/** A private folder owned by `user`, with the signing key in it readable by that user only. */
function privateDir(opts: MilterStart, name: string, user: string): { home: string; keyFile: string } {
  const ids = userIds(user)!;
  const home = path.join(opts.dir, name);
  mkdirSync(home, { recursive: true });
  chmodSync(opts.dir, 0o755);
  chownSync(home, ids.uid, ids.gid);
  const keyFile = path.join(home, `${opts.keys.rsaSelector}.key`);
  copyFileSync(opts.keys.rsaFile, keyFile);
  chownSync(keyFile, ids.uid, ids.gid);
  chmodSync(keyFile, 0o600);
  return { home, keyFile };
}

async function runDaemon(bin: string, args: string[], port: number, logFile: string): Promise<Daemon> {
  const out = openSync(`${logFile}.out`, 'a');
  const child = spawn(bin, args, { stdio: ['ignore', out, out] });
  closeSync(out);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await Promise.race([waitForListener(port, 60000), exited.then(() => Promise.reject(new Error('it exited')))]);
  } catch (err) {
    child.kill('SIGKILL');
    const tail = (f: string) => (existsSync(f) ? readFileSync(f, 'utf8').slice(-1500) : '');
    throw new Error(`${path.basename(bin)} did not listen on ${port}: ${(err as Error).message}\n${tail(`${logFile}.out`)}${tail(logFile)}`);
  }
  return { pid: child.pid!, port, stop: () => stopChild(child, exited, 'SIGTERM', 20000) };
}

export async function startRspamd(opts: MilterStart): Promise<Daemon> {
  const { home, keyFile } = privateDir(opts, 'rspamd', '_rspamd');
  const port = await freePort();
  const log = path.join(home, 'rspamd.log');
  const conf = path.join(home, 'rspamd.conf');
  writeFileSync(
    conf,
    `# rspamd for postseal's whole-MTA benchmark: DKIM signing only (bench/mta/milters.ts).
options {
  pidfile = "${home}/rspamd.pid";
  # C modules to load: only dkim, which provides the signing function.
  filters = "dkim";
  tempdir = "${home}";
  hs_cache_dir = "${home}";
  local_addrs = ["127.0.0.0/8"];
  dns { nameserver = ["127.0.0.1:${opts.dnsPort}"]; timeout = 1s; retransmits = 1; }
}
# Debian's default level: a few lines per message, as postseal and Postfix log one.
logging { type = "file"; filename = "${log}"; level = "info"; }
worker "rspamd_proxy" {
  bind_socket = "127.0.0.1:${port}";
  milter = yes;
  timeout = 120s;
  count = ${opts.processes};
  upstream "local" { default = yes; self_scan = yes; }
}
modules { path = "\${PLUGINSDIR}"; }
dkim { trusted_only = true; }
dkim_signing {
  use_esld = false;
  use_domain = "header";
  sign_local = true;
  allow_hdrfrom_mismatch = true;
  allow_username_mismatch = true;
  domain { ${OWN_DOMAIN} { selector = "${opts.keys.rsaSelector}"; path = "${keyFile}"; } }
}
`,
  );
  const vars = ['DBDIR', 'RUNDIR', 'LOGDIR'].map((v) => `--var=${v}=${home}`);
  return runDaemon(RSPAMD, ['-f', '-c', conf, '-u', '_rspamd', '-g', '_rspamd', ...vars], port, log);
}

export async function startOpendkim(opts: MilterStart): Promise<Daemon> {
  const { home, keyFile } = privateDir(opts, 'opendkim', 'opendkim');
  const port = await freePort();
  const conf = path.join(home, 'opendkim.conf');
  writeFileSync(
    conf,
    [
      "# OpenDKIM for postseal's whole-MTA benchmark: signing only (bench/mta/milters.ts).",
      'Syslog no',
      'Mode s',
      `Domain ${OWN_DOMAIN}`,
      `Selector ${opts.keys.rsaSelector}`,
      `KeyFile ${keyFile}`,
      // The key is 0600 opendkim's, but in a folder under /tmp, which is world-writable (sticky):
      // OpenDKIM refuses such a path unless told. Keys load once at start: no effect on the figures.
      'RequireSafeKeys no',
      'Canonicalization relaxed/relaxed',
      'InternalHosts 127.0.0.1',
      `Socket inet:${port}@127.0.0.1`,
      `PidFile ${home}/opendkim.pid`,
      'UserID opendkim:opendkim',
      'UMask 007',
      '',
    ].join('\n'),
  );
  return runDaemon(OPENDKIM, ['-f', '-x', conf], port, path.join(home, 'opendkim.log'));
}
