/**
 * openStore (src/store/index.ts): the main config's `store` section, with its defaults, opens
 * the sqlite file relative to the config file (the Redis case is in redis.test.ts); and
 * `config check` finds a sqlite folder that start-up would not.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import YAML from 'yaml';
import { loadConfig } from '../../src/setup';
import { isPostsealError } from '../../src/errors';
import { createLogger } from '../../src/lib/log';
import { openStore } from '../../src/store';
import { runCli } from '../helpers/cli';

const dir = mkdtempSync(path.join(tmpdir(), 'postseal-open-store-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const silent = () => createLogger('silent', new Writable({ write: (_c, _e, cb) => cb() }));

function configWith(store: Record<string, unknown> | undefined): string {
  const file = path.join(dir, `postseal-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, YAML.stringify({ bankDir: '', ...(store && { store }) }));
  return file;
}

test('by default the store is postseal.db next to the config file, behind the prefix "postseal:"', async () => {
  const file = configWith(undefined);
  const config = loadConfig(file);
  expect(config.main.store).toMatchObject({ backend: 'sqlite', keyPrefix: 'postseal:', sqlite: { file: 'postseal.db' } });
  const store = await openStore(config.main.store, file, silent());
  await store.set('k', 'v');
  await store.close();
  expect(existsSync(path.join(dir, 'postseal.db'))).toBe(true);
  expect(store.description).toBe(`sqlite ${path.join(dir, 'postseal.db')}`);
});

test('a relative sqlite file whose folder is missing is CFG_STORE_UNUSABLE naming the config file and /store/sqlite/file', async () => {
  const file = configWith({ sqlite: { file: 'state/postseal.db' } });
  const err = await openStore(loadConfig(file).main.store, file, silent()).catch((e: unknown) => e);
  expect(isPostsealError(err, 'CFG_STORE_UNUSABLE')).toBe(true);
  expect((err as Error).message).toContain(`${file}: /store/sqlite/file: ${path.join(dir, 'state', 'postseal.db')}`);
});

test('config check (dist/) exits 1 with CFG_STORE_UNUSABLE when the sqlite folder is missing, so a checked config also starts', () => {
  const file = configWith({ sqlite: { file: 'missing/postseal.db' } });
  const r = runCli(['config', 'check', '--config', file]);
  expect(r.status).toBe(1);
  expect(r.stderr).toContain(`configuration error CFG_STORE_UNUSABLE\n${file}: /store/sqlite/file: ${path.join(dir, 'missing', 'postseal.db')}: the folder`);
  expect(existsSync(path.join(dir, 'missing'))).toBe(false);
});

test('a Redis URL that is not redis:// is refused by the schema', () => {
  const file = configWith({ backend: 'redis', redis: { url: 'http://127.0.0.1:6379' } });
  expect(() => loadConfig(file)).toThrow(expect.objectContaining({ code: 'CFG_SCHEMA_INVALID' }));
});
