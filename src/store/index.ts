/**
 * Opens the Store (store/store.ts) that the main config's `store` section names: the sqlite
 * file (relative to the config file) or the Redis URL, behind store.keyPrefix. main.ts opens
 * it once at start-up and closes it after the listeners; reloads keep it.
 *
 * Fails with CFG_STORE_UNUSABLE (sqlite folder missing or file unwritable, Redis URL invalid),
 * naming the config file and the JSON pointer. A Redis that does not answer PING is a warning
 * (CFG_STORE_NOT_ANSWERING, storeWarnings) and a /readyz reason (storeProblem), not a refusal.
 */
import path from 'node:path';
import type { MainConfig } from '../config/main-schema';
import type { ConfigWarning } from '../errors';
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

/**
 * A warning when the store is Redis and it does not answer PING (store/redis.ts pingRedis):
 * postseal starts anyway, but what needs the store fails until it does.
 */
export async function storeWarnings(config: MainConfig['store'], configFile: string): Promise<ConfigWarning[]> {
  const why = await storeProblem(config);
  if (!why) return [];
  return [
    {
      code: 'CFG_STORE_NOT_ANSWERING',
      message: `${configFile}: /store/redis/url: ${why}; postseal starts, but what needs the store (DMARC results for reports, the quarantine index, notice limits, greylisting) fails until it answers (STORE_UNAVAILABLE): check the host, port, password (redis://:PASSWORD@host:6379/0) and database number`,
    },
  ];
}

/** Why the Redis store does not answer, or null (also for sqlite, which start-up opens itself). */
export async function storeProblem(config: MainConfig['store']): Promise<string | null> {
  if (config.backend !== 'redis') return null;
  const redis = require('./redis') as typeof RedisStore;
  const why = await redis.pingRedis(config.redis.url, config.redis.timeoutMs);
  return why && `Redis at ${redis.redactUrl(config.redis.url)} did not answer PING (${why})`;
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
