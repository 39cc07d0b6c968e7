/**
 * keys/key-table-file.ts: the key table is replaced through an exclusive temp file with a
 * random name, keeping its owner and mode, and activations are serialised by a lock file.
 * Tests run as root, so the owner check chowns the table to nobody first.
 */
import { chownSync, chmodSync, existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, watch, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { isPostsealError } from '../../src/errors';
import { lockKeyTable, replaceFile } from '../../src/keys/key-table-file';

/** nobody:nogroup on Debian; any uid other than ours shows whether the owner is kept. */
const NOBODY = 65534;

function table(text = 'k: { state: staged }\n'): { dir: string; file: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'postseal-keytable-'));
  const file = path.join(dir, 'key-table.yaml');
  writeFileSync(file, text);
  return { dir, file };
}

describe('replacing the key table', () => {
  it("keeps the table's owner and mode (a table of the daemon's user does not become root:root)", () => {
    const { file } = table();
    chownSync(file, NOBODY, NOBODY);
    chmodSync(file, 0o640);
    replaceFile(file, 'k: { state: active }\n');
    const st = statSync(file);
    expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([NOBODY, NOBODY, 0o640]);
    expect(readFileSync(file, 'utf8')).toBe('k: { state: active }\n');
  });

  it('does not follow a symlink planted under the old predictable temp name, and leaves no temp file', () => {
    const { dir, file } = table();
    const victim = path.join(dir, 'victim');
    writeFileSync(victim, 'untouched\n');
    symlinkSync(victim, `${file}.${process.pid}.tmp`);
    replaceFile(file, 'k: { state: active }\n');
    expect(readFileSync(victim, 'utf8')).toBe('untouched\n');
    expect(lstatSync(file).isFile()).toBe(true);
    expect(readFileSync(file, 'utf8')).toBe('k: { state: active }\n');
    expect(readdirSync(dir).sort()).toEqual(['key-table.yaml', `key-table.yaml.${process.pid}.tmp`, 'victim'].sort());
  });

  it('writes each time through a new temp file whose name cannot be guessed', async () => {
    const { dir, file } = table();
    const seen = new Set<string>();
    const watcher = watch(dir, (_event, name) => {
      if (name && name !== 'key-table.yaml') seen.add(name.toString());
    });
    try {
      replaceFile(file, 'a: 1\n');
      replaceFile(file, 'a: 2\n');
      // inotify events arrive on the event loop.
      for (let i = 0; i < 50 && seen.size < 2; i++) await new Promise((r) => setTimeout(r, 10));
    } finally {
      watcher.close();
    }
    const temps = [...seen];
    expect(temps).toHaveLength(2);
    for (const t of temps) {
      expect(t).not.toContain(String(process.pid));
      expect(t).toMatch(/^\.key-table\.yaml\.[0-9a-f]{16}\.tmp$/);
    }
    expect(readdirSync(dir)).toEqual(['key-table.yaml']);
  });

  it('a symlinked table stays a symlink; its target is replaced', () => {
    const { dir, file } = table();
    const link = path.join(dir, 'link.yaml');
    symlinkSync(file, link);
    replaceFile(link, 'a: 3\n');
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readFileSync(file, 'utf8')).toBe('a: 3\n');
  });
});

describe('the key table lock', () => {
  it('is refused with CFG_KEY_TABLE_LOCKED while a live process holds it, and removed on release', () => {
    const { file } = table();
    const release = lockKeyTable(file);
    expect(readFileSync(`${file}.lock`, 'utf8')).toBe(`${process.pid}\n`);
    let err: unknown;
    try {
      lockKeyTable(file);
    } catch (e) {
      err = e;
    }
    expect(isPostsealError(err, 'CFG_KEY_TABLE_LOCKED')).toBe(true);
    expect((err as Error).message).toContain(`pid ${process.pid}`);
    release();
    expect(existsSync(`${file}.lock`)).toBe(false);
  });

  it('a lock left by a process that has exited is taken over', () => {
    const { file } = table();
    const gone = spawnSync('true').pid;
    writeFileSync(`${file}.lock`, `${gone}\n`);
    const release = lockKeyTable(file);
    expect(readFileSync(`${file}.lock`, 'utf8')).toBe(`${process.pid}\n`);
    release();
  });
  it('a stale lock is not taken over while another activation is taking it over (no two holders)', () => {
    const { file } = table();
    const gone = spawnSync('true').pid;
    writeFileSync(`${file}.lock`, `${gone}\n`);
    writeFileSync(`${file}.lock.takeover`, '1\n');
    expect(() => lockKeyTable(file)).toThrow(expect.objectContaining({ code: 'CFG_KEY_TABLE_LOCKED' }));
    expect(readFileSync(`${file}.lock`, 'utf8')).toBe(`${gone}\n`);
  });
});
