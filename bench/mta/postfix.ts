/**
 * The whole-MTA benchmark's private Postfix (Debian package `postfix`, started as root: its
 * master drops to mail_owner): rendered from examples/postfix (main.cf, master.cf and the
 * FILTER tag maps) with every example port mapped to a free loopback port, as the e2e suite's
 * test/e2e/postfix.ts does, then a few throw-away settings applied with postconf. Every
 * recipient is relayed to the benchmark's smtp-sink (relayhost). One config folder and queue
 * for the whole run; each set-up rewrites the configuration and starts a fresh master, so
 * its CPU figures start from nothing.
 */
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from '../postseal';
import { waitForGreeting } from '../proc';
import type { PostfixSettings } from './setups';

const exec = promisify(execFile);
/** Debian installs postfix, postconf and postqueue in /usr/sbin, which a CI user's PATH may lack. */
async function run(cmd: string, args: string[]): Promise<{ stdout: string }> {
  try {
    return await exec(cmd, args, { env: { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` } });
  } catch (err) {
    const { stderr } = err as { stderr?: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${(stderr ?? '').trim() || (err as Error).message}`, { cause: err });
  }
}
const EXAMPLES = path.join(ROOT, 'examples/postfix');
const EXAMPLE_FILES = ['main.cf', 'master.cf', 'tag_as_originating.re', 'tag_as_foreign.re'];

/** Where each example port goes: 25 is where smtp-source sends, the rest as examples/postfix. */
export interface MtaPorts {
  /** `smtp inet` (example 25): the MX port the load arrives on. */
  mx: number;
  /** The filter's inbound and ORIGINATING listeners (10024, 10026), reinjection smtpds (10025, 10027). */
  filterInbound: number;
  filterOriginating: number;
  reinjectInbound: number;
  reinjectOriginating: number;
  /** The list manager's smtpd (10029) and its filter listener (10028): unused here, but rendered. */
  lists: number;
  listsFilter: number;
}

const EXAMPLE_PORT: Record<number, keyof MtaPorts> = {
  10024: 'filterInbound',
  10025: 'reinjectInbound',
  10026: 'filterOriginating',
  10027: 'reinjectOriginating',
  10028: 'listsFilter',
  10029: 'lists',
};

/** The example text with every 127.0.0.1 port remapped; a port the map lacks is an error. */
function render(text: string, ports: MtaPorts): string {
  return text
    .replace(/127\.0\.0\.1(\]?):(\d+)\b/g, (_m, bracket: string, port: string) => {
      const key = EXAMPLE_PORT[Number(port)];
      if (!key) throw new Error(`examples/postfix uses port ${port}, which the whole-MTA bench does not map`);
      return `127.0.0.1${bracket}:${ports[key]}`;
    })
    .replace(/^smtp(\s+inet\s)/m, `127.0.0.1:${ports.mx}$1`);
}

export class BenchPostfix {
  private readonly etc: string;
  private readonly queue: string;

  constructor(
    readonly dir: string,
    private readonly sinkPort: number,
  ) {
    this.etc = path.join(dir, 'etc');
    this.queue = path.join(dir, 'queue');
  }

  /**
   * Writes the configuration for one set-up: the examples as they are, the throw-away
   * settings, then the set-up's own (later ones win); empties the queue.
   */
  async configure(ports: MtaPorts, settings: PostfixSettings): Promise<void> {
    const data = path.join(this.dir, 'data');
    for (const d of [this.etc, this.queue, data]) mkdirSync(d, { recursive: true });
    for (const f of EXAMPLE_FILES) writeFileSync(path.join(this.etc, f), render(readFileSync(path.join(EXAMPLES, f), 'utf8'), ports));
    // mkdtemp makes a 0700 folder; master wants its data_directory owned by mail_owner.
    chmodSync(this.dir, 0o755);
    chownSync(data, Number((await run('id', ['-u', 'postfix'])).stdout.trim()), -1);
    await this.postconf([
      '-e',
      `queue_directory=${this.queue}`,
      `data_directory=${data}`,
      // Containers have no syslog: Postfix's own log file (postlogd, 3.4+).
      `maillog_file=${path.join(this.dir, 'maillog')}`,
      `maillog_file_prefixes=${this.dir}`,
      'inet_interfaces=127.0.0.1',
      'inet_protocols=ipv4',
      // Nothing is delivered here: every recipient goes to smtp-sink, by address, no DNS.
      'mydestination=',
      'alias_maps=',
      'alias_database=',
      'local_recipient_maps=',
      `relayhost=[127.0.0.1]:${this.sinkPort}`,
      'smtp_tls_security_level=none',
      // The example points at a snakeoil certificate that a minimal container lacks.
      'smtpd_tls_security_level=none',
      ...Object.entries(settings.main).map(([k, v]) => `${k}=${v}`),
    ]);
    if (settings.master?.length) await this.postconf(['-F', ...settings.master]);
    // The submission service needs TLS and SASL that a container lacks; nothing sends there.
    await this.postconf(['-M#', 'submission/inet']);
    // Nothing left from the last set-up (mail for its filter's port would be deferred).
    // Postfix is stopped, so the files can go directly (postsuper would fail to log: postlogd is down).
    for (const q of ['maildrop', 'incoming', 'active', 'deferred', 'defer', 'hold', 'bounce', 'trace', 'corrupt']) {
      const d = path.join(this.queue, q);
      if (existsSync(d)) removeFiles(d);
    }
  }

  async start(ports: MtaPorts): Promise<void> {
    await run('postfix', ['-c', this.etc, 'start']);
    try {
      for (const port of [ports.mx, ports.reinjectInbound, ports.reinjectOriginating]) await waitForGreeting(port, 20000);
    } catch (err) {
      throw new Error(`the bench's Postfix did not start: ${(err as Error).message}\n${this.maillogTail()}`, { cause: err });
    }
  }

  /** `postfix stop`, then waits until the master is gone (its children end with it). */
  async stop(): Promise<void> {
    const pid = this.masterPid();
    if (pid === null) return;
    await run('postfix', ['-c', this.etc, 'stop']).catch(() => undefined);
    for (let i = 0; i < 200 && alive(pid); i++) await new Promise((r) => setTimeout(r, 50));
  }

  /** The running master's pid (queue/pid/master.pid), or null. */
  masterPid(): number | null {
    const file = path.join(this.queue, 'pid/master.pid');
    if (!existsSync(file)) return null;
    const pid = Number(readFileSync(file, 'utf8').trim());
    return pid && alive(pid) ? pid : null;
  }

  /** Messages in any queue (maildrop, incoming, active, deferred, hold): `postqueue -j`. */
  async queued(): Promise<{ total: number; deferred: string[] }> {
    const { stdout } = await run('postqueue', ['-c', this.etc, '-j']);
    const entries = stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { queue_name: string; recipients: { delay_reason?: string }[] });
    return {
      total: entries.length,
      deferred: entries.filter((e) => e.queue_name === 'deferred').map((e) => e.recipients.map((r) => r.delay_reason ?? '').join('; ')),
    };
  }

  /** Waits until every queue is empty, so a run starts with nothing left from the last. */
  async drained(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const q = await this.queued();
      if (q.total === 0) return;
      if (q.deferred.length) throw new Error(`Postfix deferred ${q.deferred.length} message(s): ${q.deferred[0]}\n${this.maillogTail()}`);
      if (Date.now() > deadline) throw new Error(`Postfix's queue did not drain in ${timeoutMs} ms (${q.total} left)\n${this.maillogTail()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  maillogTail(lines = 20): string {
    const file = path.join(this.dir, 'maillog');
    const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
    return `--- ${file} (last ${lines} lines) ---\n${text
      .split('\n')
      .slice(-lines - 1)
      .join('\n')}`;
  }

  private async postconf(args: string[]): Promise<void> {
    await run('postconf', ['-c', this.etc, ...args]);
  }
}

/** Queue files only: the folders (hashed ones included) stay, with the owners Postfix gave them. */
function removeFiles(dir: string): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) removeFiles(p);
    else rmSync(p, { force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
