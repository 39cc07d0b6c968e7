/**
 * Keys for a postseal that runs as its own user: `keys generate --owner` hands the key to that
 * user, and a key the user cannot read is explained at start-up (uid, gid, mode). Run as root
 * (the test needs to chown and to run postseal as `nobody`, as the service user would be).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, chmodSync, chownSync, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { cliMain, nodeBin, runCli } from '../../helpers/cli';
import { writeKeyConfig } from '../../helpers/key-config';

const uid = Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }));
const gid = Number(execFileSync('id', ['-g', 'nobody'], { encoding: 'utf8' }));

function keyConfig() {
  const cfg = writeKeyConfig({
    keys: { k1: { domain: 'example.org', selector: 's1', keyFile: 'example.org.s1.pem', algorithm: 'ed25519-sha256' } },
    rules: [{ author: 'example.org', keys: ['k1'] }],
  });
  // mkdtemp makes 0700 folders; the service user must be able to read the config, and write its
  // store and its quarantine (as in the systemd example, both in its state folder).
  chmodSync(cfg.dir, 0o755);
  const state = path.join(cfg.dir, 'state');
  mkdirSync(state);
  chownSync(state, uid, gid);
  appendFileSync(cfg.config, `store: { sqlite: { file: ${state}/postseal.db } }\nquarantine: { dir: ${state}/quarantine }\n`);
  return cfg;
}

/** `config check` as the service user would run it. */
function checkAsNobody(config: string) {
  return spawnSync(nodeBin, [cliMain, 'config', 'check', '--config', config], { uid, gid, encoding: 'utf8', timeout: 30000, cwd: '/' });
}

describe('keys for a postseal running as its own user', () => {
  it('runs as root, as giving a key to the service user needs', () => {
    expect(process.getuid?.()).toBe(0);
  });

  it('keys generate --owner makes the user the owner of a 0600 key, leaving no temporary file', () => {
    const cfg = keyConfig();
    const keys = path.join(cfg.dir, 'keys');
    const r = runCli(['keys', 'generate', '--domain', 'example.org', '--selector', 's1', '--type', 'ed25519', '--out', keys, '--owner', 'nobody']);
    expect(r.status).toBe(0);
    expect(r.stderr).toContain(`(owner nobody, uid ${uid} gid ${gid}, mode 0600)`);
    const st = statSync(path.join(keys, 'example.org.s1.pem'));
    expect([st.uid, st.gid, st.mode & 0o777]).toEqual([uid, gid, 0o600]);
    expect(readdirSync(keys).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    const check = checkAsNobody(cfg.config);
    expect(check.stderr).toBe('');
    expect(check.status).toBe(0);
  });

  it('a key the service user cannot read stops config check, naming the user, the owner and the mode', () => {
    const cfg = keyConfig();
    const keys = path.join(cfg.dir, 'keys');
    expect(runCli(['keys', 'generate', '--domain', 'example.org', '--selector', 's1', '--type', 'ed25519', '--out', keys]).status).toBe(0);
    const check = checkAsNobody(cfg.config);
    expect(check.status).toBe(1);
    expect(check.stderr).toContain('CFG_KEY_UNREADABLE');
    expect(check.stderr).toContain(`postseal runs as uid ${uid} gid ${gid}, the file is owner uid 0 gid 0 mode 0600`);
    expect(check.stderr).toContain('--owner USER');
  });

  it('an unknown --owner is refused before a key is written', () => {
    const cfg = keyConfig();
    const keys = path.join(cfg.dir, 'keys');
    const r = runCli(['keys', 'generate', '--domain', 'example.org', '--selector', 's1', '--type', 'ed25519', '--out', keys, '--owner', 'no-such-user-postseal']);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('--owner no-such-user-postseal: no such user');
    expect(existsSync(path.join(keys, 'example.org.s1.pem'))).toBe(false);
  });
});
