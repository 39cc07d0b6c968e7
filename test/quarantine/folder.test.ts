/**
 * Atomic writes in the quarantine folder: the file appears whole with mode 0600 or not at all,
 * and a failed write leaves no temp file; ids never name a path outside the folder.
 */
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { isPostsealError } from '../../src/errors';
import { fileOf, writeAtomically } from '../../src/quarantine/folder';

const fresh = () => mkdtempSync(path.join(tmpdir(), 'q-folder-'));

it('writes a file whole with mode 0600, replacing an older copy, and leaves no temp file', async () => {
  const dir = fresh();
  const file = path.join(dir, 'x.json');
  writeFileSync(file, 'old', { mode: 0o644 });
  expect(await writeAtomically(file, [Buffer.from('new '), Buffer.from('content')])).toBe(11);
  expect(readFileSync(file, 'utf8')).toBe('new content');
  expect(statSync(file).mode & 0o777).toBe(0o600);
  expect(readdirSync(dir)).toEqual(['x.json']);
});

it('a write whose source fails leaves the old file as it was and no temp file', async () => {
  const dir = fresh();
  const file = path.join(dir, 'x.eml');
  writeFileSync(file, 'old');
  async function* broken(): AsyncIterable<Buffer> {
    yield Buffer.from('part');
    throw new Error('source gone');
  }
  const err = await writeAtomically(file, broken()).catch((e: unknown) => e);
  expect(isPostsealError(err, 'QUARANTINE_FAILED')).toBe(true);
  expect(readFileSync(file, 'utf8')).toBe('old');
  expect(readdirSync(dir)).toEqual(['x.eml']);
});

it('refuses ids that are not ours, so no path leaves the folder', () => {
  expect(() => fileOf('/q', '../../etc/passwd', 'eml')).toThrow(RangeError);
  expect(() => fileOf('/q', 'ABC', 'json')).toThrow(RangeError);
  expect(fileOf('/q', '0123456789abcdef01234567', 'eml')).toBe('/q/0123456789abcdef01234567.eml');
});
