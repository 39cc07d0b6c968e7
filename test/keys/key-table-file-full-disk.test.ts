/**
 * `postseal keys activate` rewrites the key table on a file system that may be nearly full (a
 * small real tmpfs, test/helpers/tmpfs.ts): write(2) writes what fits and returns the short
 * count without an error, and the table must never be replaced by its first part.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { replaceFile } from '../../src/keys/key-table-file';
import { mountSmallDisk, type SmallDisk } from '../helpers/tmpfs';

let disk: SmallDisk;
beforeEach(() => {
  disk = mountSmallDisk(64 * 1024);
});
afterEach(() => disk.unmount());

test('a table that does not fit whole is not written: the old table stays, whole, and no temp file is left', async () => {
  const file = path.join(disk.dir, 'key-table');
  const old = 'sel1._domainkey.example.org example.org:sel1:/etc/postseal/keys/sel1.pem\n';
  writeFileSync(file, old);
  await disk.fill(4096);
  const next = Array.from({ length: 400 }, (_, i) => `sel${i}._domainkey.example.org example.org:sel${i}:/etc/postseal/keys/sel${i}.pem\n`).join('');
  expect(next.length).toBeGreaterThan(2 * 4096);
  expect(() => replaceFile(file, next)).toThrow(expect.objectContaining({ code: 'ENOSPC' }));
  expect(readFileSync(file, 'utf8')).toBe(old);
  await disk.free();
  expect(readdirSync(disk.dir)).toEqual(['key-table']);
});
