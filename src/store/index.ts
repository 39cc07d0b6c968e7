/**
 * Opens the Store (store/store.ts) that the main config's `store` section names: the sqlite
 * file (relative to the config file) or the Redis URL, behind store.keyPrefix. main.ts opens
 * it once at start-up and closes it after the listeners; reloads keep it.
 *
 * Fails with CFG_STORE_UNUSABLE (sqlite folder missing or file unwritable, Redis URL invalid),
 * naming the config file and the JSON pointer.
 */
import path from 'node:path';
import type { MainConfig } from '../config/main-schema';
import type { Logger } from '../lib/log';
import type * as RedisStore from './redis';
import { checkSqliteFile, openSqliteStore } from './sqlite';
import type { Store } from './store';

export type { Store } from './store';

function sqliteFile(config: MainConfig['store'], configFile: string): string {
  return path.resolve(path.dirname(configFile), config.sqlite.file);
}

/**
 * What config/preflight.ts (start-up, reload, `config check`) can prove without opening the
 * store: the sqlite file's folder exists and is writable. Redis is not asked: postseal starts
 * without it (see store/redis.ts), and the schema already checked the URL's form.
 */
export function checkStoreConfig(config: MainConfig['store'], configFile: string): void {
  if (config.backend === 'sqlite') checkSqliteFile(sqliteFile(config, configFile), `${configFile}: /store/sqlite/file`);
}

export async function openStore(config: MainConfig['store'], configFile: string, log: Logger): Promise<Store> {
  const { keyPrefix } = config;
  const store =
    config.backend === 'redis'
      ? // ioredis (about 25 MB) is loaded only when Redis is the back-end.
        await (require('./redis') as typeof RedisStore).openRedisStore({
          url: config.redis.url,
          keyPrefix,
          timeoutMs: config.redis.timeoutMs,
          log,
          where: `${configFile}: /store/redis/url`,
        })
      : openSqliteStore({
          file: sqliteFile(config, configFile),
          keyPrefix,
          busyTimeoutMs: config.sqlite.busyTimeoutMs,
          log,
          where: `${configFile}: /store/sqlite/file`,
        });
  log.info({ store: store.description }, 'store opened');
  return store;
}
