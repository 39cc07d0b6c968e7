/**
 * Every name a zip member has is a name: the central directory's, the local header's, and an
 * Info-ZIP Unicode Path field's when its CRC matches (unzip ignores it otherwise); and an
 * archive with bytes in front of it (a self-extractor, or junk) is read as unzip reads it.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Budget, expand, newNode } from '../../../src/lib/archive/expand';
import { readZipDirectory } from '../../../src/lib/archive/zip';
import { craftedZip } from '../../helpers/crafted-zip';

const limits = { maxDepth: 8, maxMembers: 100, maxMemberBytes: 1 << 20, maxTotalBytes: 1 << 22, maxRatio: 200, ratioFloorBytes: 1 << 20 };

async function namesIn(zip: Buffer): Promise<string[][]> {
  const node = newNode('1', ['a.zip'], []);
  node.types = ['zip'];
  await expand(node, zip, 1, new Budget(limits), new AbortController().signal);
  return node.children.map((c) => c.names);
}

function unzipList(zip: Buffer): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'postseal-zip-'));
  try {
    writeFileSync(path.join(dir, 'a.zip'), zip);
    // unzip exits 1 after a warning (extra bytes in front, a bad Unicode Path CRC) and lists anyway.
    const r = spawnSync('unzip', ['-Z1', 'a.zip'], { cwd: dir });
    if (r.status !== 0 && r.status !== 1) throw new Error(r.stderr.toString());
    return r.stdout.toString();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('zip member names', () => {
  it('keeps the raw central name when a Unicode Path field with a right CRC names something else', async () => {
    const zip = craftedZip([{ central: 'evil.js', local: 'aaa.txt', unicodePath: { name: 'aaa.txt' } }].map((m) => ({ ...m, data: 'x' })));
    expect(unzipList(zip)).toBe('aaa.txt\n');
    expect((await namesIn(zip))[0]).toEqual(expect.arrayContaining(['evil.js', 'aaa.txt']));
  });

  it('ignores a Unicode Path field whose CRC does not match the raw name, as unzip does', async () => {
    const zip = craftedZip([{ central: 'evil.js', unicodePath: { name: 'aaa.txt', crcOf: 'other' }, data: 'x' }]);
    expect(unzipList(zip)).toBe('evil.js\n');
    expect(readZipDirectory(zip, 10).entries[0].names).toEqual(['evil.js']);
  });

  it('checks the name a Unicode Path field gives when its CRC is right, although the raw one is harmless', async () => {
    const zip = craftedZip([{ central: 'aaa.txt', unicodePath: { name: 'evil.js' }, data: 'x' }]);
    expect(unzipList(zip)).toBe('evil.js\n');
    expect((await namesIn(zip))[0]).toEqual(expect.arrayContaining(['aaa.txt', 'evil.js']));
  });
});

describe('a zip with bytes in front of it', () => {
  it('is read from its end record, offsets corrected for the prefix, as unzip reads it', async () => {
    const zip = craftedZip(
      [
        { central: 'evil.js', data: 'var a=1;' },
        { central: 'readme.txt', data: 'hi' },
      ],
      Buffer.from(`GIF89a${'x'.repeat(100)}`),
    );
    expect(unzipList(zip)).toBe('evil.js\nreadme.txt\n');
    const dir = readZipDirectory(zip, 10);
    expect(dir.problem).toBeUndefined();
    expect(await namesIn(zip)).toEqual([['evil.js'], ['readme.txt']]);
  });
});
