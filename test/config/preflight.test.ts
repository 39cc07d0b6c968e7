/**
 * config/preflight.ts: the spool folder is resolved against the config file, created 0700
 * when missing, and refused (CFG_SPOOL_UNUSABLE, naming file, pointer and fix) when it cannot
 * be created or written, at start-up and on reload.
 */
import { mkdirSync, mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import YAML from 'yaml';
import { buildStageDeps, loadConfig } from '../../src/setup';
import { ProcessSlots } from '../../src/lib/archive/external';
import { DkimKeyCache } from '../../src/lib/dkim/public-keys';
import { createDnsResolver } from '../../src/lib/dns';
import { dmarcResultsNotKept } from '../../src/store/dmarc-results';
import { preflight } from '../../src/config/preflight';
import { isPostsealError } from '../../src/errors';
import { createLogger } from '../../src/lib/log';
import { startPostseal } from '../../src/main';
import { runCli } from '../helpers/cli';

/** A config folder with a default bank forwarding to 127.0.0.1:10025 and one listener on port 0. */
function configWith(spool: Record<string, unknown>, more: Record<string, unknown> = {}): { dir: string; file: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'postseal-preflight-'));
  mkdirSync(path.join(dir, 'banks'));
  writeFileSync(path.join(dir, 'banks', 'default.yaml'), 'forward: { host: 127.0.0.1, port: 10025 }\n');
  const file = path.join(dir, 'postseal.yaml');
  writeFileSync(file, YAML.stringify({ bankDir: 'banks', listeners: [{ port: 0, bank: 'default' }], spool, ...more }));
  return { dir, file };
}

const silent = () => createLogger('info', new Writable({ write: (_c, _e, cb) => cb() }));

async function errorOf(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e) => e,
  );
}

describe('spool folder', () => {
  it('a relative spool.dir is resolved against the config file, not the working directory', () => {
    const { dir, file } = configWith({ dir: 'var/spool' });
    expect(process.cwd()).not.toBe(dir);
    expect(loadConfig(file).main.spool.dir).toBe(path.join(dir, 'var', 'spool'));
  });

  it('an empty spool.dir is the system temp folder, as an absolute path', () => {
    const { file } = configWith({});
    expect(loadConfig(file).main.spool.dir).toBe(tmpdir());
  });

  it('a missing folder is created with mode 0700 and left empty', async () => {
    const { dir, file } = configWith({ dir: 'var/spool' });
    await preflight(loadConfig(file));
    const spool = path.join(dir, 'var', 'spool');
    expect(statSync(spool).mode & 0o777).toBe(0o700);
    expect(readdirSync(spool)).toEqual([]);
  });

  it('a folder that cannot be created is CFG_SPOOL_UNUSABLE naming the file, /spool/dir and the fix', async () => {
    const { dir, file } = configWith({ dir: 'not-a-folder/spool' });
    writeFileSync(path.join(dir, 'not-a-folder'), 'a file where the folder should be\n');
    const err = await errorOf(preflight(loadConfig(file)));
    expect(isPostsealError(err, 'CFG_SPOOL_UNUSABLE')).toBe(true);
    expect((err as Error).message).toContain(`${file}: /spool/dir: ${path.join(dir, 'not-a-folder', 'spool')}`);
    expect((err as Error).message).toContain('mkdir -m 700');
  });

  it('a folder in which no file can be created is CFG_SPOOL_UNUSABLE', async () => {
    // /proc/self exists and cannot hold a new file, even for root.
    const { file } = configWith({ dir: '/proc/self' });
    const err = await errorOf(preflight(loadConfig(file)));
    expect(isPostsealError(err, 'CFG_SPOOL_UNUSABLE')).toBe(true);
    expect((err as Error).message).toContain('cannot write a file in it');
  });

  it('start-up fails and a reload is refused when the folder is unusable; the running configuration stays', async () => {
    const bad = configWith({ dir: 'not-a-folder/spool' });
    writeFileSync(path.join(bad.dir, 'not-a-folder'), '');
    expect(isPostsealError(await errorOf(startPostseal(loadConfig(bad.file), silent())), 'CFG_SPOOL_UNUSABLE')).toBe(true);

    const good = configWith({ dir: 'spool' });
    const app = await startPostseal(loadConfig(good.file), silent());
    try {
      const port = app.portOf('default');
      expect(isPostsealError(await errorOf(app.reload(loadConfig(bad.file))), 'CFG_SPOOL_UNUSABLE')).toBe(true);
      expect(app.portOf('default')).toBe(port);
    } finally {
      await app.close();
    }
  });
});

describe('postseal start and config check with an unusable spool folder', () => {
  it.each([['1'], ['2']])('start --workers %s exits 1 with CFG_SPOOL_UNUSABLE said once, before listening', (workers) => {
    const { dir, file } = configWith({ dir: 'not-a-folder/spool' });
    writeFileSync(path.join(dir, 'not-a-folder'), '');
    const r = runCli(['start', '--workers', workers, '--config', file]);
    expect(r.status).toBe(1);
    expect(r.stderr.match(/configuration error CFG_SPOOL_UNUSABLE/g)).toHaveLength(1);
    expect(r.stderr).toContain(`${file}: /spool/dir: `);
    expect(r.stdout).not.toContain('listening');
  });

  it('config check exits 1 naming the file and /spool/dir', () => {
    const { dir, file } = configWith({ dir: 'not-a-folder/spool' });
    writeFileSync(path.join(dir, 'not-a-folder'), '');
    const r = runCli(['config', 'check', '--config', file]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`configuration error CFG_SPOOL_UNUSABLE\n${file}: /spool/dir: ${path.join(dir, 'not-a-folder', 'spool')}: cannot be created`);
  });
});

describe('start-up warnings', () => {
  it('a listener on 0.0.0.0 starts, with a warning log line naming the open-relay risk', async () => {
    const { file } = configWith({ dir: 'spool' });
    writeFileSync(file, YAML.stringify({ bankDir: 'banks', listeners: [{ address: '0.0.0.0', port: 0, bank: 'default' }], spool: { dir: 'spool' } }));
    const lines: Record<string, unknown>[] = [];
    const log = createLogger(
      'info',
      new Writable({
        write: (c, _e, cb) => {
          lines.push(
            ...String(c)
              .split('\n')
              .filter(Boolean)
              .map((l) => JSON.parse(l)),
          );
          cb();
        },
      }),
    );
    const app = await startPostseal(loadConfig(file), log);
    await app.close();
    const warning = lines.find((l) => l.code === 'CFG_LISTENER_NOT_LOOPBACK');
    expect(warning).toMatchObject({ level: 40, msg: expect.stringContaining(`${file}: /listeners/0/address: 0.0.0.0`) });
    expect(String(warning?.msg)).toContain('open relay');
  });
});

describe('quarantine folder', () => {
  it('is created 0700 by the checks, relative to the config file, with no warning', async () => {
    const { dir, file } = configWith({});
    const warnings = await preflight(loadConfig(file));
    expect(warnings.filter((w) => w.code === 'CFG_QUARANTINE_UNUSABLE')).toEqual([]);
    expect(statSync(path.join(dir, 'quarantine')).mode & 0o777).toBe(0o700);
    expect(readdirSync(path.join(dir, 'quarantine'))).toEqual([]);
  });

  it('one that cannot be created is a warning naming the file, the pointer and the fix, and `config check` says so', async () => {
    const { dir, file } = configWith({});
    writeFileSync(path.join(dir, 'quarantine'), 'a file where the folder should be\n');
    const warnings = await preflight(loadConfig(file));
    expect(warnings).toContainEqual({
      code: 'CFG_QUARANTINE_UNUSABLE',
      message: expect.stringMatching(
        new RegExp(
          `^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: /quarantine/dir: .*quarantine: cannot be created .*; a quarantine verdict will be a 451 .*create it \\(mkdir -m 700\\)`,
        ),
      ),
    });
    const r = runCli(['config', 'check', '--config', file]);
    expect(r.stderr).toContain('CFG_QUARANTINE_UNUSABLE');
  });
});

describe('decoders (lsar and unar)', () => {
  const decoders = (d: Record<string, unknown>) => loadConfig(configWith({}, { decoders: d }).file);
  const unpackerOf = (config: ReturnType<typeof loadConfig>) =>
    buildStageDeps(
      config,
      { resolver: createDnsResolver(config.main.dns), dmarcStore: dmarcResultsNotKept, unpackSlots: new ProcessSlots() },
      'default',
      silent(),
      new DkimKeyCache(),
    ).unpacker;

  it("auto with Debian's unar installed: no warning, and the banks get the unpacker", async () => {
    const config = decoders({});
    expect((await preflight(config)).map((w) => w.code)).not.toContain('CFG_DECODERS_MISSING');
    expect(unpackerOf(config)?.reads(['rar'])).toBe(true);
  });

  it('auto with lsar missing: a warning naming the file, /decoders and the fix, and no unpacker', async () => {
    const config = decoders({ lsarPath: '/nonexistent/lsar' });
    const warning = (await preflight(config)).find((w) => w.code === 'CFG_DECODERS_MISSING');
    expect(warning?.message).toMatch(/postseal\.yaml: \/decoders: \/nonexistent\/lsar or \/usr\/bin\/unar is not installed; .*apt install unar/);
    expect(unpackerOf(config)).toBeUndefined();
  });

  it('use unar with a command that is missing or does not run: start-up refused, CFG_DECODERS_UNUSABLE naming the pointer', async () => {
    const missing = await errorOf(preflight(decoders({ use: 'unar', unarPath: '/nonexistent/unar' })));
    expect(isPostsealError(missing) && missing.code).toBe('CFG_DECODERS_UNUSABLE');
    expect((missing as Error).message).toMatch(/\/decoders\/unarPath: \/nonexistent\/unar: does not run \(.*ENOENT/);
    const broken = await errorOf(preflight(decoders({ use: 'unar', lsarPath: '/bin/false' })));
    expect((broken as Error).message).toMatch(/\/decoders\/lsarPath: \/bin\/false: does not run \(Command failed/);
  });

  it('off: no check, no warning, no unpacker', async () => {
    const config = decoders({ use: 'off', lsarPath: '/nonexistent/lsar' });
    expect((await preflight(config)).map((w) => w.code)).toEqual([]);
    expect(unpackerOf(config)).toBeUndefined();
  });
});
