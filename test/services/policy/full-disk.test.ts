/**
 * Greylisting over a sqlite store whose disk fills (the store file on a small tmpfs,
 * test/helpers/tmpfs.ts), over a real policy connection: a triplet that passed before passes
 * on (reads work on a full disk; only its refresh is lost), a new one is deferred as it would
 * be anyway, the failures are logged at most once a minute with the count held back, and the
 * store takes writes again once space returns.
 */
import path from 'node:path';
import { Writable } from 'node:stream';
import { createLogger } from '../../../src/lib/log';
import { REPEATED_FAILURE_LOG_MS } from '../../../src/lib/log-limit';
import type { PolicyService } from '../../../src/services/policy';
import { openSqliteStore } from '../../../src/store/sqlite';
import type { Store } from '../../../src/store/store';
import { fixedClock, PolicyClient, rcptRequest, startPolicy, writePolicyConfig } from '../../helpers/policy';
import { mountSmallDisk, type SmallDisk } from '../../helpers/tmpfs';

const logs: Record<string, unknown>[] = [];
const log = createLogger(
  'info',
  new Writable({
    write(chunk, _e, cb) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line));
      cb();
    },
  }),
);
const clock = fixedClock();

let disk: SmallDisk;
let store: Store;
let service: PolicyService;
let c: PolicyClient;
beforeAll(async () => {
  disk = mountSmallDisk(256 * 1024);
  store = openSqliteStore({ file: path.join(disk.dir, 'state.db'), keyPrefix: 'test:', busyTimeoutMs: 500 });
  service = await startPolicy(writePolicyConfig({ spf: { enabled: false } }), store, { clock, log });
  c = await PolicyClient.connect(service.port);
});
afterAll(async () => {
  c?.close();
  await service?.close();
  await store?.close();
  disk?.unmount();
});

const storeLines = () => logs.filter((l) => l.code === 'STORE_UNAVAILABLE');

it('on a full disk a known triplet passes, a new one is deferred, a line a minute is logged; with space back new triplets are stored', async () => {
  const known = rcptRequest();
  expect(await c.ask(known)).toMatch(/^DEFER_IF_PERMIT 4\.7\.1 Greylisted/);
  clock.advance(320);
  expect(await c.ask(known)).toMatch(/^PREPEND X-Greylist: delayed/);

  await disk.fill();
  for (let i = 0; i < 5; i++) expect(await c.ask(known)).toBe('DUNNO');
  const fresh = (n: number) => rcptRequest({ sender: `new${n}@sender.example` });
  for (let i = 0; i < 5; i++) expect(await c.ask(fresh(i))).toBe('DEFER_IF_PERMIT 4.3.0 Policy service error, try again later');
  expect(storeLines()).toHaveLength(1);
  expect(storeLines()[0]).toMatchObject({ level: 50, heldBack: 0, err: { message: expect.stringContaining('disk is full') } });
  clock.advance(REPEATED_FAILURE_LOG_MS / 1000);
  expect(await c.ask(known)).toBe('DUNNO');
  expect(storeLines()).toHaveLength(2);
  expect(storeLines()[1]).toMatchObject({ heldBack: 9 });

  await disk.free();
  expect(await c.ask(fresh(0))).toMatch(/^DEFER_IF_PERMIT 4\.7\.1 Greylisted/);
  clock.advance(320);
  expect(await c.ask(fresh(0))).toMatch(/^PREPEND X-Greylist: delayed/);
  expect(storeLines()).toHaveLength(2);
});
