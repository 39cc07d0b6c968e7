/**
 * A real rspamd (Debian's rspamd package, scripts/install-test-deps.sh) in the foreground
 * (-f; -i lets its workers run as root in a test container) with a minimal configuration of
 * its own in a temp dir: one normal worker on a free loopback port and a unix socket, no
 * controller, no Redis, no statistics, no DNS lists or other modules (filters = ""), DNS
 * pointed at a closed port, a four-line TLD list (the shipped public suffix list alone costs
 * ten seconds of start-up), the default actions (reject 15, add header 6, greylist 4) and one
 * Lua rule: TAG_SUBJECT_POINTS for a Subject holding TAG_SUBJECT (as in spamd.ts), and two
 * prefilters: soft reject for SOFT_REJECT_SUBJECT, the skip flag for SKIP_SUBJECT. GTUBE is
 * rspamd's own: action reject. start() resolves once /ping answers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './redis-server';
import { TAG_SUBJECT, TAG_SUBJECT_POINTS } from './spamd';

export const RSPAMD_REJECT = 15;
export const RSPAMD_ADD_HEADER = 6;
/** A Subject holding this gets the action soft reject (a prefilter, as rspamd's ratelimit gives it). */
export const SOFT_REJECT_SUBJECT = 'POSTSEAL-SOFT-REJECT';
/** A Subject holding this makes rspamd skip its rules (task flag skip: is_skipped in the answer). */
export const SKIP_SUBJECT = 'POSTSEAL-SKIP-ME';

export interface Rspamd {
  readonly host: string;
  readonly port: number;
  readonly socket: string;
  kill(): Promise<void>;
  stop(): Promise<void>;
}

const RULES = `rspamd_config.POSTSEAL_TAG_SUBJECT = {
  callback = function(task)
    local s = task:get_subject()
    return s ~= nil and s:find('${TAG_SUBJECT}', 1, true) ~= nil
  end,
  score = ${TAG_SUBJECT_POINTS},
  description = 'postseal test rule',
}
rspamd_config:register_symbol({
  name = 'POSTSEAL_SOFT_REJECT',
  type = 'prefilter',
  priority = 10,
  callback = function(task)
    local s = task:get_subject()
    if s ~= nil and s:find('${SOFT_REJECT_SUBJECT}', 1, true) ~= nil then
      task:set_pre_result('soft reject', 'try again later (postseal test)')
    end
  end,
})
rspamd_config:register_symbol({
  name = 'POSTSEAL_SKIP',
  type = 'prefilter',
  priority = 10,
  callback = function(task)
    local s = task:get_subject()
    if s ~= nil and s:find('${SKIP_SUBJECT}', 1, true) ~= nil then task:set_flag('skip') end
  end,
})
`;

export async function startRspamd(): Promise<Rspamd> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'postseal-rspamd-'));
  for (const d of ['db', 'run', 'tmp']) mkdirSync(path.join(dir, d));
  const port = await freePort();
  const socket = path.join(dir, 'rspamd.sock');
  writeFileSync(path.join(dir, 'rules.lua'), RULES);
  writeFileSync(path.join(dir, 'tld.dat'), 'com\nnet\norg\ntest\n');
  writeFileSync(
    path.join(dir, 'rspamd.conf'),
    `lua = "${dir}/rules.lua";
options {
  pidfile = "${dir}/run/rspamd.pid"; dbdir = "${dir}/db"; tempdir = "${dir}/tmp";
  filters = ""; url_tld = "${dir}/tld.dat";
  dns { nameserver = ["127.0.0.1:9"]; timeout = 0.1s; retransmits = 0; }
}
logging { type = "console"; level = "error"; }
actions { reject = 15; add_header = 6; greylist = 4; }
worker "normal" { bind_socket = "127.0.0.1:${port}"; bind_socket = "${socket} mode=0666"; count = 1; }
`,
  );
  const child = spawn('rspamd', ['-f', '-i', '-c', path.join(dir, 'rspamd.conf')], { stdio: ['ignore', 'pipe', 'pipe'], cwd: dir, detached: true });
  let out = '';
  const collect = (d: Buffer) => {
    if (out.length < 20000) out += d.toString();
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
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
  try {
    await ready(child, port, () => out);
  } catch (err) {
    await end('SIGKILL');
    throw err;
  }
  return { host: '127.0.0.1', port, socket, kill: () => end('SIGKILL'), stop: () => end('SIGTERM') };
}

async function ready(child: ChildProcess, port: number, log: () => string): Promise<void> {
  const spawnFailed = new Promise<never>((_, reject) => {
    child.once('error', (err) => reject(new Error(`rspamd could not be started (${err.message}); install the Debian package rspamd (scripts/install-test-deps.sh)`)));
    child.once('exit', (code) => reject(new Error(`rspamd exited ${code}: ${log()}`)));
  });
  spawnFailed.catch(() => undefined);
  const deadline = Date.now() + 20000;
  while (Date.now() < deadline) {
    if (await Promise.race([pings(port), spawnFailed])) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`rspamd did not answer /ping within 20 s: ${log()}`);
}

function pings(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/ping', agent: false, timeout: 500 }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(body.trim() === 'pong'));
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
  });
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, signal);
  } catch {
    child.kill(signal);
  }
}
