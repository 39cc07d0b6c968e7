/**
 * amavisd-new as the comparison, when Debian's package is installed and we run as root (it
 * insists on dropping to its own user): a private configuration in the benchmark's folder,
 * every content check bypassed, DKIM verification on the default bank and DKIM signing
 * (RSA-2048, the same key as postseal's) on its ORIGINATING bank, forwarding to the same
 * smtp-sink. It cannot sign with Ed25519, so the dual path has no amavisd-new figure.
 *
 * The content path (with `scanners`) is a CONTENT policy bank on its own port: the inbound
 * bank's work plus the virus check (clamd over INSTREAM on the bench's clamd socket, amavisd's
 * `clamd:` protocol of ask_daemon, each decoded part streamed), the spam check
 * (Amavis::SpamControl::SpamdClient, which has 127.0.0.1:783 built in: the bench's spamd
 * listens there) and the banned-name check with Debian's $banned_filename_re (read from
 * /etc/amavis/conf.d/20-debian_defaults), X-Spam-* fields on every scanned message
 * ($sa_tag_level_deflt -999) as postseal's content bank has them.
 */
import { spawn } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, copyFileSync, chmodSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { stopChild } from './postfix-tools';
import { freePort, waitForGreeting } from './proc';
import { ENVELOPE, OWN_DOMAIN, type BenchKeys } from './messages';

const AMAVISD = '/usr/sbin/amavisd';
const DEBIAN_DEFAULTS = '/etc/amavis/conf.d/20-debian_defaults';

/** Why amavisd-new cannot be measured here, or null when it can. */
export function amavisdUnavailable(): string | null {
  if (!existsSync(AMAVISD)) return `${AMAVISD} not installed (Debian package amavisd-new)`;
  if (process.getuid?.() !== 0) return 'amavisd-new needs root to start (it switches to its own user)';
  try {
    execFileSync('id', ['amavis'], { stdio: 'ignore' });
  } catch {
    return 'no amavis user (the amavisd-new package creates it)';
  }
  return null;
}

export interface Amavisd {
  readonly pid: number;
  readonly maxServers: number;
  /** content: 0 without scanners (no such listener). */
  readonly ports: { inbound: number; originating: number; nochecks: number; content: number };
  stop(): Promise<void>;
}

export interface AmavisdStart {
  dir: string;
  maxServers: number;
  keys: BenchKeys;
  sinkPort: number;
  dnsPort: number;
  /** The content path's clamd socket (bench/scanners.ts); spamd is at 127.0.0.1:783. */
  scanners?: { clamdSocket: string };
}

export async function startAmavisd(opts: AmavisdStart): Promise<Amavisd> {
  // amavisd refuses a config file that its own user could change, so the config and key
  // live in a root-owned folder and only its home is the amavis user's.
  const conf = path.join(opts.dir, `amavisd-${opts.maxServers}`);
  const home = path.join(conf, 'home');
  rmSync(conf, { recursive: true, force: true });
  mkdirSync(path.join(home, 'tmp'), { recursive: true });
  mkdirSync(path.join(home, 'db'));
  chmodSync(opts.dir, 0o755);
  const uid = Number(execFileSync('id', ['-u', 'amavis']).toString());
  const gid = Number(execFileSync('id', ['-g', 'amavis']).toString());
  for (const d of [home, path.join(home, 'tmp'), path.join(home, 'db')]) chownSync(d, uid, gid);
  const keyFile = path.join(conf, 'rsa2048.pem');
  copyFileSync(opts.keys.rsaFile, keyFile);
  chownSync(keyFile, 0, gid);
  chmodSync(keyFile, 0o640);
  const ports = { inbound: await freePort(), originating: await freePort(), nochecks: await freePort(), content: opts.scanners ? await freePort() : 0 };
  const file = path.join(conf, 'amavisd.conf');
  writeFileSync(file, configText(opts, home, keyFile, ports), { mode: 0o644 });
  const child = spawn(AMAVISD, ['-c', file, 'foreground'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    for (const port of Object.values(ports).filter((p) => p)) await waitForGreeting(port, 60000);
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`amavisd-new did not start: ${stderr.trim().slice(-500) || (err as Error).message} (log: ${home}/amavisd.log)`);
  }
  return { pid: child.pid!, maxServers: opts.maxServers, ports, stop: () => stopChild(child, exited, 'SIGTERM', 20000) };
}

function configText(opts: AmavisdStart, home: string, keyFile: string, ports: Amavisd['ports']): string {
  return `# amavisd-new for postseal's benchmark: content checks bypassed, DKIM only.
use strict;
use Net::DNS::Resolver;
$MYHOME = '${home}';
$TEMPBASE = "$MYHOME/tmp";
$db_home = "$MYHOME/db";
$pid_file = "$MYHOME/amavisd.pid";
$lock_file = "$MYHOME/amavisd.lock";
$daemon_user = 'amavis';
$daemon_group = 'amavis';
$myhostname = 'amavisd.${OWN_DOMAIN}';
$mydomain = '${OWN_DOMAIN}';
$max_servers = ${opts.maxServers};
$max_requests = 1000000;
$child_timeout = 120;
$DO_SYSLOG = 0;
$LOGFILE = "$MYHOME/amavisd.log";
$log_level = 0;
$enable_db = 0;
$enable_global_cache = 0;
$nanny_details_level = 0;
$inet_socket_bind = '127.0.0.1';
$inet_socket_port = [${[ports.inbound, ports.originating, ports.nochecks, ports.content].filter((p) => p).join(', ')}];
$interface_policy{'${ports.inbound}'} = 'INBOUND';
$interface_policy{'${ports.originating}'} = 'ORIGINATING';
$interface_policy{'${ports.nochecks}'} = 'NOCHECKS';
@inet_acl = qw(127.0.0.1);
@mynetworks = qw(127.0.0.0/8);
@local_domains_maps = (['${OWN_DOMAIN}', '${ENVELOPE.to.split('@')[1]}']);
# amavisd loads its anti-virus and anti-spam code only when the global maps leave a check on,
# so with the content path's scanners they are on here and bypassed by every bank but CONTENT.
@bypass_virus_checks_maps = (${opts.scanners ? 0 : 1});
@bypass_spam_checks_maps = (${opts.scanners ? 0 : 1});
@bypass_banned_checks_maps = (${opts.scanners ? 0 : 1});
@bypass_header_checks_maps = (1);
my %bypass = (bypass_virus_checks_maps => [1], bypass_spam_checks_maps => [1], bypass_banned_checks_maps => [1]);
@av_scanners = ();
@av_scanners_backup = ();
$enable_dkim_verification = 1;
$enable_dkim_signing = 1;
dkim_key('${OWN_DOMAIN}', '${opts.keys.rsaSelector}', '${keyFile}');
@dkim_signature_options_bysender_maps = ({ '.' => { c => 'relaxed/relaxed' } });
# The DKIM public keys come from the benchmark's loopback DNS server: amavisd makes its own
# resolver from /etc/resolv.conf in each child, so every resolver made is pointed there.
{
  no warnings 'redefine';
  my $new = Net::DNS::Resolver->can('new');
  *Net::DNS::Resolver::new = sub { my $r = $new->(@_); $r->nameservers('127.0.0.1'); $r->port(${opts.dnsPort}); $r };
}
$forward_method = 'smtp:[127.0.0.1]:${opts.sinkPort}';
$notify_method = $forward_method;
$policy_bank{'INBOUND'} = { %bypass };
$policy_bank{'ORIGINATING'} = { %bypass, originating => 1 };
$policy_bank{'NOCHECKS'} = { %bypass, bypass_decode_parts => 1, enable_dkim_verification => 0, enable_dkim_signing => 0 };
${opts.scanners ? contentText(opts.scanners.clamdSocket, ports.content) : ''}1;
`;
}

/** The CONTENT bank: virus, spam and banned checks on, against the bench's scanners. */
function contentText(clamdSocket: string, port: number): string {
  const debian = readFileSync(DEBIAN_DEFAULTS, 'utf8');
  const banned = /^\$banned_filename_re = new_RE\([\s\S]*?^\);$/m.exec(debian);
  if (!banned) throw new Error(`no $banned_filename_re in ${DEBIAN_DEFAULTS}`);
  return `# The content path: the checks the other banks bypass.
@av_scanners = (['ClamAV-clamd-stream', \\&ask_daemon, ['{}/*', 'clamd:${clamdSocket}'],
  qr/\\bOK$/m, qr/\\bFOUND$/m, qr/^.*?: (?!Infected Archive)(.*) FOUND$/m ]);
@spam_scanners = (['SpamAssassin', 'Amavis::SpamControl::SpamdClient']);
$sa_tag_level_deflt = -999;
$sa_tag2_level_deflt = 6.31;
$sa_kill_level_deflt = 6.31;
$sa_mail_body_size_limit = 200*1024;
$X_HEADER_TAG = 'X-Virus-Scanned';
$X_HEADER_LINE = "amavisd-new at $mydomain";
$final_virus_destiny = D_REJECT;
$final_banned_destiny = D_REJECT;
$final_spam_destiny = D_REJECT;
# Debian's, from ${DEBIAN_DEFAULTS}:
${banned[0]}
$interface_policy{'${port}'} = 'CONTENT';
$policy_bank{'CONTENT'} = {};
`;
}
