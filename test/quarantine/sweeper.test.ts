/**
 * The quarantine sweeper as the daemon runs it: it creates the folder (0700) at start, sweeps
 * on its interval (an expired message goes), and stops its timer at close.
 */
import { mkdtempSync, readdirSync, statSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLogger } from '../../src/lib/log';
import { Quarantine } from '../../src/quarantine/quarantine';
import { QuarantineSweeper } from '../../src/quarantine/sweeper';
import { openSqliteStore } from '../../src/store/sqlite';

it('creates the folder at start, removes an expired message on its interval, and stops at close', async () => {
  const base = mkdtempSync(path.join(tmpdir(), 'q-sweeper-'));
  const dir = path.join(base, 'held');
  const store = openSqliteStore({ file: path.join(base, 's.db'), keyPrefix: 'ps:', busyTimeoutMs: 1000 });
  const q = new Quarantine({ dir, maxMessageSizeBytes: 1 << 20, maxTotalBytes: 0, minFreeBytes: 0, maxAgeDays: 1, sweepIntervalMs: 1000 }, store, createLogger('silent'));
  const sweeper = new QuarantineSweeper(q, () => q, createLogger('silent'));
  try {
    await sweeper.start();
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const raw = Buffer.from('Subject: old\r\n\r\nx\r\n');
    const { id } = await q.hold({
      session: 's',
      bank: 'default',
      decidedBy: 'default',
      reason: 'R',
      findings: [],
      envelope: { mailFrom: 'a@example.org', smtputf8: false, recipients: [{ address: 'b@example.net' }] },
      client: {},
      peer: '127.0.0.1',
      size: raw.length,
      raw: async function* () {
        yield raw;
      },
    });
    const twoDaysAgo = (Date.now() - 2 * 86400_000) / 1000;
    utimesSync(path.join(dir, `${id}.json`), twoDaysAgo, twoDaysAgo);
    const deadline = Date.now() + 5000;
    while (readdirSync(dir).length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(readdirSync(dir)).toEqual([]);
  } finally {
    await sweeper.close();
    await store.close();
  }
});
