/**
 * The install a newcomer runs (README "Install"): the packed project installed with the
 * machine's own npm and Node (Debian 12: Node 20) into a temporary prefix, its `postseal`
 * command run with that older Node first on PATH, and the systemd unit checked by
 * `systemd-analyze verify` against the installed command.
 *
 * Booting the unit under systemd is not tested here: in this container (and CI's) PID 1 is
 * not systemd (`ps -p 1`), so there is no manager to start it. What systemd would rely on is
 * tested instead: the process the launcher starts is postseal itself (its pid is the one
 * systemd would take as MainPID, SIGHUP to it reloads, SIGTERM to it drains and exits 0),
 * it runs on the Node 24 binary of the `node` package, and every flag of ExecStart exists.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { root, startDaemon } from '../helpers/cli';
import { startSink } from '../helpers/sink';

// The machine's own tools, as a newcomer's shell has them: not node_modules/.bin.
const systemPath = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const env = { ...process.env, PATH: systemPath };
const unitFile = path.join(root, 'examples/systemd/postseal.service');

let prefix: string;
let installLog: string;
let postseal: string;

beforeAll(() => {
  const dir = mkdtempSync(path.join(tmpdir(), 'postseal-install-'));
  // --ignore-scripts: dist/ is the pretest build; rebuilding it here would race other tests reading it.
  execFileSync('npm', ['pack', '--ignore-scripts', '--pack-destination', dir], { cwd: root, env, stdio: 'pipe' });
  const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'))!;
  prefix = path.join(dir, 'prefix');
  const r = spawnSync('npm', ['install', '-g', '--prefix', prefix, '--no-audit', '--no-fund', '--prefer-offline', path.join(dir, tarball)], {
    cwd: dir,
    env,
    encoding: 'utf8',
    timeout: 240000,
  });
  installLog = `${r.stdout}${r.stderr}`;
  if (r.status !== 0) throw new Error(`npm install -g failed (${r.status}):\n${installLog}`);
  postseal = path.join(prefix, 'bin', 'postseal');
}, 300000);

function run(args: string[], extraEnv: Record<string, string> = {}) {
  return spawnSync(postseal, args, { env: { ...env, ...extraEnv }, encoding: 'utf8', timeout: 30000, cwd: tmpdir() });
}

describe('npm install -g of the packed project', () => {
  it('puts a postseal command on PATH that answers --help with the system Node first on PATH', () => {
    expect(existsSync(postseal)).toBe(true);
    const r = run(['--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('Usage: postseal <command>');
    expect(installLog).not.toMatch(/npm (error|ERR!)/);
  });

  it('config check runs on the embedded example, saying so, and on POSTSEAL_CONFIG', () => {
    const embedded = run(['config', 'check']);
    expect(embedded.status).toBe(0);
    expect(embedded.stdout).toContain('valid');
    expect(embedded.stderr).toContain('/etc/postseal/postseal.yaml does not exist');
    const dir = mkdtempSync(path.join(tmpdir(), 'postseal-installed-conf-'));
    mkdirSync(path.join(dir, 'banks'));
    writeFileSync(path.join(dir, 'banks', 'default.yaml'), 'forward: { host: 127.0.0.1, port: 10998 }\n');
    writeFileSync(path.join(dir, 'postseal.yaml'), 'bankDir: banks\nlisteners:\n  - { port: 10999, bank: default }\n');
    const chosen = run(['config', 'check'], { POSTSEAL_CONFIG: path.join(dir, 'postseal.yaml') });
    expect(chosen.stderr).toBe('');
    expect(chosen.stdout).toContain(`${path.join(dir, 'postseal.yaml')}: valid`);
    expect(chosen.status).toBe(0);
  });

  it('the launcher execs Node 24: the started process is postseal on the node package binary, reloads on SIGHUP and drains on SIGTERM', async () => {
    const sink = await startSink();
    const dir = mkdtempSync(path.join(tmpdir(), 'postseal-installed-run-'));
    mkdirSync(path.join(dir, 'banks'));
    writeFileSync(path.join(dir, 'banks', 'default.yaml'), `forward: { host: 127.0.0.1, port: ${sink.port} }\n`);
    writeFileSync(path.join(dir, 'postseal.yaml'), 'bankDir: banks\nlisteners:\n  - { port: 0, bank: default }\n');
    const d = startDaemon(path.join(dir, 'postseal.yaml'), { command: [postseal], args: ['--workers', '2'], env: { PATH: systemPath } });
    try {
      const started = await d.waitFor((l) => l.msg === 'postseal started', 30000);
      // What systemd takes as MainPID (Type=simple) is the process it forked: postseal itself.
      expect(started.pid).toBe(d.proc.pid);
      const exe = readlinkSync(`/proc/${d.proc.pid}/exe`);
      expect(exe).toBe(path.join(prefix, 'lib/node_modules/postseal/node_modules/node/bin/node'));
      expect(execFileSync(exe, ['--version'], { encoding: 'utf8' })).toMatch(/^v24\./);
      expect(execFileSync('node', ['--version'], { env, encoding: 'utf8' })).not.toMatch(/^v24\./);
      await d.waitFor((l) => l.msg === 'worker started' && d.lines.filter((x) => x.msg === 'worker started').length === 2, 30000);
      d.proc.kill('SIGHUP'); // ExecReload=/bin/kill -HUP $MAINPID
      await d.waitFor((l) => l.msg === 'configuration reloaded', 30000);
      d.proc.kill('SIGTERM');
      expect(await d.exited).toBe(0);
    } finally {
      d.proc.kill('SIGKILL');
      await sink.close();
    }
  }, 90000);
});

describe('examples/systemd/postseal.service', () => {
  const unit = readFileSync(unitFile, 'utf8');
  const execStart = /^ExecStart=(.*)$/m.exec(unit)![1].split(/\s+/);

  function verify(text: string): { status: number | null; stderr: string } {
    const dir = mkdtempSync(path.join(tmpdir(), 'postseal-unit-'));
    const file = path.join(dir, 'postseal.service');
    writeFileSync(file, text);
    const r = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8', env });
    if (r.error) throw new Error(`systemd-analyze cannot run (apt-get install systemd): ${r.error.message}`);
    return { status: r.status, stderr: r.stderr };
  }

  it('passes systemd-analyze verify with its ExecStart pointing at the installed command, without a warning', () => {
    expect(execStart[0]).toBe('/usr/local/bin/postseal'); // where `npm install -g` puts it with Debian's npm (prefix /usr/local)
    const r = verify(unit.replaceAll('/usr/local/bin/postseal', postseal));
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('systemd-analyze verify fails a unit whose command does not exist, and warns of an unknown key', () => {
    expect(verify(unit.replaceAll('/usr/local/bin/postseal', '/nonexistent/postseal')).status).not.toBe(0);
    expect(verify(unit.replaceAll('/usr/local/bin/postseal', postseal).replace('NoNewPrivileges=', 'NoNewPrivilege=')).stderr).toContain("Unknown key 'NoNewPrivilege'");
  });

  it('every option of ExecStart is one that postseal start knows', () => {
    const help = run(['start', '--help']).stdout;
    expect(execStart[1]).toBe('start');
    for (const flag of execStart.filter((a) => a.startsWith('--'))) expect(help).toContain(flag);
  });

  it('runs as its own user, reloads with SIGHUP to the main pid, and keeps the hardening the README promises', () => {
    for (const line of [
      'Type=simple',
      'User=postseal',
      'ExecReload=/bin/kill -HUP $MAINPID',
      'KillMode=mixed',
      'StateDirectory=postseal',
      'RuntimeDirectory=postseal',
      'NoNewPrivileges=yes',
      'ProtectSystem=strict',
      'ProtectHome=yes',
      'PrivateTmp=yes',
      'CapabilityBoundingSet=\n',
    ])
      expect(unit).toContain(line);
    expect(unit).not.toMatch(/^MemoryDenyWriteExecute=yes/m); // V8's JIT
  });

  it("the config it names keeps what postseal writes in the unit's StateDirectory", () => {
    const conf = readFileSync(path.join(root, 'examples/systemd/postseal.yaml'), 'utf8');
    expect(conf).toMatch(/^ {2}dir: \/var\/lib\/postseal\/spool$/m);
    expect(conf).toContain('file: /var/lib/postseal/postseal.db');
    // A copy of it checks, with the state paths moved to a temp folder (the real ones are system folders).
    const dir = mkdtempSync(path.join(tmpdir(), 'postseal-unit-conf-'));
    copyFileSync(path.join(root, 'examples/systemd/postseal.yaml'), path.join(dir, 'postseal.yaml'));
    writeFileSync(path.join(dir, 'postseal.yaml'), conf.replaceAll('/var/lib/postseal', dir));
    execFileSync('cp', ['-r', path.join(root, 'policy-banks'), dir]);
    const r = run(['config', 'check', '--config', path.join(dir, 'postseal.yaml')]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
