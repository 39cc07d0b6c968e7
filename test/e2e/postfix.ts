/**
 * A private, real Postfix (Debian package `postfix`) for the e2e suite, configured FROM
 * examples/postfix: the example files are copied with their ports remapped (ports.ts), then
 * the few settings a throw-away instance needs are applied with postconf, each with its
 * reason below. Nothing else is hand-written, so the suite tests the examples themselves.
 *
 * The instance lives in one temp folder (config, queue, data, mailbox, maillog), listens on
 * 127.0.0.1 only and delivers every recipient in example.test to one mbox file through
 * virtual(8). Postfix's master must start as root (it drops to mail_owner=postfix and uses
 * setgid_group=postdrop, both created by the Debian package); anything else fails start().
 */
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { canConnect, waitFor } from './wait';

const exec = promisify(execFile);
/** Debian installs postfix, postconf and postqueue in /usr/sbin, which a CI user's PATH may lack. */
const run = (cmd: string, args: string[]) => exec(cmd, args, { env: { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` } });
const EXAMPLES = path.resolve(__dirname, '../../examples/postfix');
const EXAMPLE_FILES = ['main.cf', 'master.cf', 'tag_as_originating.re', 'tag_as_foreign.re', 'policy.cf', 'milter.cf'];
const DIR_PREFIX = 'postseal-e2e-';
export const MAIL_DOMAIN = 'example.test';
/** Domains delivered to the mailbox besides MAIL_DOMAIN: an IDN (as A-labels) and a name with "_". */
export const EXTRA_MAIL_DOMAINS = ['xn--mnchen-3ya.test', 'my_host.example.test'] as const;

/** The ports the examples use, by their documented number; each maps to a free port. */
export const EXAMPLE_PORTS = [25, 587, 10024, 10025, 10026, 10027, 10028, 10029, 10001, 10002, 10003, 10040, 10030, 10031] as const;
export type ExamplePort = (typeof EXAMPLE_PORTS)[number];
export type PortMap = Readonly<Record<ExamplePort, number>>;

export interface QueueEntry {
  queue_name: string;
  queue_id: string;
  recipients: { address: string; delay_reason?: string }[];
}

export class Postfix {
  private constructor(
    readonly dir: string,
    readonly ports: PortMap,
  ) {}

  get configDir(): string {
    return path.join(this.dir, 'etc');
  }

  /** Renders the examples into a new instance and starts it; removes it again if start-up fails. */
  static async start(ports: PortMap): Promise<Postfix> {
    await reapStaleInstances();
    const pf = new Postfix(mkdtempSync(path.join(tmpdir(), DIR_PREFIX)), ports);
    writeFileSync(path.join(pf.dir, 'owner.pid'), String(process.pid));
    try {
      await pf.configure();
      await pf.postfix('start');
      await waitFor('Postfix listening on every port', async () => (await Promise.all(pf.inetPorts().map(canConnect))).every(Boolean), { explain: () => pf.maillogTail() });
    } catch (err) {
      const log = pf.maillogTail();
      await pf.destroy();
      throw new Error(`the e2e Postfix did not start (it needs the Debian package postfix and root): ${(err as Error).message}\n${log}`, { cause: err });
    }
    return pf;
  }

  /** `postfix stop`; an instance that never got as far as starting has nothing to stop. */
  async stop(): Promise<void> {
    if (existsSync(path.join(this.dir, 'queue/pid/master.pid'))) await this.postfix('stop').catch(() => undefined);
  }

  /** Stops the instance and removes its folder. */
  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  async reload(): Promise<void> {
    await this.postfix('reload');
  }

  /** Appends the rendered examples/postfix/policy.cf to main.cf (later settings win) and reloads. */
  async enablePolicyService(): Promise<void> {
    const etc = this.configDir;
    writeFileSync(path.join(etc, 'main.cf'), `${readFileSync(path.join(etc, 'main.cf'), 'utf8')}\n${readFileSync(path.join(etc, 'policy.cf'), 'utf8')}`);
    await this.reload();
  }

  /**
   * The milter layout (examples/postfix/milter.cf appended to main.cf, later settings win):
   * no content filter, pickup without its -o content_filter, and the submission service named
   * ORIGINATING in the {daemon_name} macro, as the example says. Reloads.
   */
  async enableMilter(): Promise<void> {
    const etc = this.configDir;
    writeFileSync(path.join(etc, 'main.cf'), `${readFileSync(path.join(etc, 'main.cf'), 'utf8')}\n${readFileSync(path.join(etc, 'milter.cf'), 'utf8')}`);
    await this.postconf(['-P', 'pickup/unix/content_filter=', `127.0.0.1:${this.ports[587]}/inet/milter_macro_daemon_name=ORIGINATING`]);
    await this.reload();
  }

  /** `postqueue -j`: the machine-readable form of `postqueue -p`. */
  async queue(): Promise<QueueEntry[]> {
    const { stdout } = await run('postqueue', ['-c', this.configDir, '-j']);
    return stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as QueueEntry);
  }

  /** `postqueue -f`: retry deferred mail now, dead destinations included. */
  async flush(): Promise<void> {
    await run('postqueue', ['-c', this.configDir, '-f']);
  }

  /** Waits until the message is in the deferred queue and returns its entry. */
  deferred(queueId: string, explain: () => string): Promise<QueueEntry> {
    return waitFor(`${queueId} in the deferred queue`, async () => (await this.queue()).find((q) => q.queue_id === queueId && q.queue_name === 'deferred'), { explain });
  }

  /** Waits until the queue is empty and the message is in the mailbox; returns its copies. */
  delivered(messageId: string, explain: () => string): Promise<string[]> {
    return waitFor(`delivery of ${messageId}`, async () => (await this.queue()).length === 0 && this.copies(messageId).length > 0 && this.copies(messageId), { explain });
  }

  /** Delivered messages in the mbox, oldest first (virtual(8) quotes body lines starting "From "). */
  mailbox(): string[] {
    const file = path.join(this.dir, 'mail/mailbox');
    if (!existsSync(file)) return [];
    return readFileSync(file, 'latin1')
      .split(/^(?=From )/m)
      .filter(Boolean);
  }

  /** Delivered copies of the message with this Message-ID. */
  copies(messageId: string): string[] {
    const field = new RegExp(`^Message-ID: <${messageId.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}>\\r?$`, 'im');
    return this.mailbox().filter((m) => field.test(m.slice(0, m.search(/\r?\n\r?\n/))));
  }

  maillog(): string {
    const file = path.join(this.dir, 'maillog');
    return existsSync(file) ? readFileSync(file, 'utf8') : '';
  }

  maillogTail(lines = 30): string {
    return `--- ${path.join(this.dir, 'maillog')} (last ${lines} lines) ---\n${this.maillog()
      .split('\n')
      .slice(-lines - 1)
      .join('\n')}`;
  }

  /**
   * Comments out the inet service on an example port (`postconf -M#`) and reloads; resolves
   * once nothing listens there. The returned function puts master.cf back and waits for it.
   */
  async disableService(port: ExamplePort): Promise<() => Promise<void>> {
    const masterCf = path.join(this.configDir, 'master.cf');
    const original = readFileSync(masterCf, 'utf8');
    const real = this.ports[port];
    await this.postconf(['-M#', `127.0.0.1:${real}/inet`]);
    await this.reload();
    await waitFor(`service on port ${real} to close`, async () => !(await canConnect(real)));
    return async () => {
      writeFileSync(masterCf, original);
      await this.reload();
      await waitFor(`service on port ${real} to listen again`, () => canConnect(real));
    };
  }

  /**
   * Sets main.cf parameters (`postconf -e`) and reloads, unless `reload` is false because a
   * reload follows at once (enableMilter): two reloads in a row can leave Postfix's
   * `postfix reload` waiting for good.
   */
  async setParameters(params: Record<string, string>, reload = true): Promise<void> {
    await this.postconf(['-e', ...Object.entries(params).map(([k, v]) => `${k}=${v}`)]);
    if (reload) await this.reload();
  }

  /** Sets `-o` parameters of the inet service on an example port (`postconf -P`) and reloads. */
  async setServiceParameters(port: ExamplePort, params: Record<string, string>): Promise<void> {
    const service = `127.0.0.1:${this.ports[port]}/inet`;
    await this.postconf(['-P', ...Object.entries(params).map(([k, v]) => `${service}/${k}=${v}`)]);
    await this.reload();
  }

  private inetPorts(): number[] {
    return [25, 587, 10025, 10027, 10029].map((p) => this.ports[p as ExamplePort]);
  }

  private async configure(): Promise<void> {
    const etc = this.configDir;
    const [queue, data, mail] = ['queue', 'data', 'mail'].map((d) => path.join(this.dir, d));
    for (const d of [etc, queue, data, mail]) mkdirSync(d);
    for (const f of EXAMPLE_FILES) writeFileSync(path.join(etc, f), renderExample(readFileSync(path.join(EXAMPLES, f), 'utf8'), this.ports));
    const nobody = await ids('nobody');
    // mkdtemp makes a 0700 folder: the postfix and nobody users must reach their parts of it.
    chmodSync(this.dir, 0o755);
    // master refuses a data_directory not owned by mail_owner (it keeps its lock file there).
    chownSync(data, (await ids('postfix')).uid, -1);
    // virtual(8) writes the mailbox as the static uid below.
    chownSync(mail, nobody.uid, nobody.gid);
    await this.postconf([
      '-e',
      `queue_directory=${queue}`,
      `data_directory=${data}`,
      // Containers have no syslog: Postfix's own log file (postlogd, 3.4+), read by the tests.
      `maillog_file=${path.join(this.dir, 'maillog')}`,
      `maillog_file_prefixes=${this.dir}`,
      // Loopback only: this instance must not accept mail from the network; IPv4 avoids
      // depending on ::1 in the container.
      'inet_interfaces=127.0.0.1',
      'inet_protocols=ipv4',
      // Deliver example.test to a file: no local users or aliases exist in a container.
      'mydestination=',
      'alias_maps=',
      'alias_database=',
      `virtual_mailbox_domains=${[MAIL_DOMAIN, ...EXTRA_MAIL_DOMAINS].join(' ')}`,
      `virtual_mailbox_base=${mail}`,
      'virtual_mailbox_maps=static:mailbox',
      `virtual_uid_maps=static:${nobody.uid}`,
      `virtual_gid_maps=static:${nobody.gid}`,
      // The example points at a snakeoil certificate that a minimal container lacks.
      'smtpd_tls_security_level=none',
    ]);
    const mx = `127.0.0.1:${this.ports[25]}/inet`;
    const submission = `127.0.0.1:${this.ports[587]}/inet`;
    await this.postconf([
      '-P',
      // The tests play a remote MX client from 127.0.0.1: XCLIENT sets the client address
      // that smtpd_sender_restrictions and XFORWARD then see.
      `${mx}/smtpd_authorized_xclient_hosts=127.0.0.0/8`,
      // No SASL provider in a container: loopback clients (mynetworks) stand in for
      // authenticated users; main.cf's permit_mynetworks keeps their ORIGINATING tag exactly
      // as permit_sasl_authenticated does for real users.
      `${submission}/smtpd_tls_security_level=none`,
      `${submission}/smtpd_tls_auth_only=no`,
      `${submission}/smtpd_sasl_auth_enable=no`,
      `${submission}/smtpd_client_restrictions=permit_mynetworks,reject`,
      `${submission}/smtpd_relay_restrictions=permit_mynetworks,reject`,
    ]);
  }

  private async postconf(args: string[]): Promise<void> {
    await run('postconf', ['-c', this.configDir, ...args]);
  }

  private async postfix(command: string): Promise<void> {
    await run('postfix', ['-c', this.configDir, command]);
  }
}

/**
 * The example text with every port replaced: `smtp inet` and `submission inet` become
 * loopback listeners, every 127.0.0.1:PORT / [127.0.0.1]:PORT is remapped. A port the map
 * does not know is an error, so a new example service cannot silently use a real port.
 */
export function renderExample(text: string, ports: PortMap): string {
  return text
    .replace(/127\.0\.0\.1(\]?):(\d+)\b/g, (_m, bracket: string, port: string) => {
      const mapped = ports[Number(port) as ExamplePort];
      if (mapped === undefined) throw new Error(`examples/postfix uses port ${port}, which the e2e port map does not know`);
      return `127.0.0.1${bracket}:${mapped}`;
    })
    .replace(/^smtp(\s+inet\s)/m, `127.0.0.1:${ports[25]}$1`)
    .replace(/^submission(\s+inet\s)/m, `127.0.0.1:${ports[587]}$1`);
}

async function ids(user: string): Promise<{ uid: number; gid: number }> {
  const [uid, gid] = await Promise.all(['-u', '-g'].map(async (flag) => Number((await run('id', [flag, user])).stdout.trim())));
  return { uid, gid };
}

/** Stops Postfix instances (and their postseal) left by a test run that died before afterAll. */
async function reapStaleInstances(): Promise<void> {
  for (const name of readdirSync(tmpdir()).filter((n) => n.startsWith(DIR_PREFIX))) {
    const dir = path.join(tmpdir(), name);
    const owner = Number(readFileOr(path.join(dir, 'owner.pid')));
    // No owner yet: another worker may be creating it this very moment.
    if (owner ? isAlive(owner) : (statSync(dir, { throwIfNoEntry: false })?.mtimeMs ?? 0) > Date.now() - 600_000) continue;
    const postseal = Number(readFileOr(path.join(dir, 'postseal.pid')));
    // Its process group (postseal runs detached), and only if that pid is still our postseal
    // (its command line names this folder), not a reused pid.
    if (postseal && readFileOr(`/proc/${postseal}/cmdline`).includes(dir)) process.kill(-postseal, 'SIGKILL');
    if (existsSync(path.join(dir, 'queue/pid/master.pid'))) await run('postfix', ['-c', path.join(dir, 'etc'), 'stop']).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The file's text, or '' if it is gone (another worker reaping, a process that exited). */
function readFileOr(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return '';
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
