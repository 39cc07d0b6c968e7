/**
 * The hourly notify limits against a real sqlite store: a DSN is tempfailed when the store
 * cannot count it (fail closed: an uncounted flood of forged senders would be backscatter),
 * a notice is sent with a warning.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { isPostsealError } from '../../src/errors';
import { createLogger } from '../../src/lib/log';
import { countSent, overLimit } from '../../src/notify/rate';
import { openSqliteStore } from '../../src/store/sqlite';

const limits = { maxDsnPerHour: 2, maxPerSenderDomainPerHour: 1, maxNoticesPerHour: 5 };
const log = createLogger('silent');

it('counts only what was sent, and refuses a DSN (NOTIFY_FAILED) when the store is down while a notice still goes', async () => {
  const store = openSqliteStore({ file: path.join(mkdtempSync(path.join(tmpdir(), 'rate-db-')), 's.db'), keyPrefix: 'ps:', busyTimeoutMs: 1000 });
  expect(await overLimit(store, limits, 'dsn', 'a.test', log)).toBeNull();
  expect(await overLimit(store, limits, 'dsn', 'a.test', log)).toBeNull();
  await countSent(store, 'dsn', 'a.test', log);
  expect(await overLimit(store, limits, 'dsn', 'a.test', log)).toBe('notify.maxPerSenderDomainPerHour (1) for a.test');
  await store.close();
  const err = await overLimit(store, limits, 'dsn', 'b.test', log).catch((e: unknown) => e);
  expect(isPostsealError(err, 'NOTIFY_FAILED')).toBe(true);
  expect(await overLimit(store, limits, 'notice:admin', undefined, log)).toBeNull();
});
