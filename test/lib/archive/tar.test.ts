/**
 * The tar lister on archives GNU tar made: pax and GNU long names, directories, and a damaged
 * header that ends the listing with a problem.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { listTar } from '../../../src/lib/archive/tar';
import { makeTar } from '../../helpers/archives';

const long = `${'d'.repeat(120)}/${'n'.repeat(130)}.exe`;

function gnuTar(): Buffer {
  const dir = mkdtempSync(path.join(tmpdir(), 'postseal-tar-'));
  try {
    mkdirSync(path.join(dir, path.dirname(long)), { recursive: true });
    writeFileSync(path.join(dir, long), 'x');
    execFileSync('tar', ['-cf', 'out.tar', '--format=gnu', long], { cwd: dir });
    return readFileSync(path.join(dir, 'out.tar'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('tar listing', () => {
  it('reads long names from pax records', () => {
    const t = makeTar({ [long]: 'x', 'short.txt': 'hello' });
    expect(
      listTar(t, 10)
        .entries.filter((e) => e.file)
        .map((e) => [e.name, e.data.toString()]),
    ).toEqual([
      [long, 'x'],
      ['short.txt', 'hello'],
    ]);
  });

  it('reads long names from GNU L members', () => {
    expect(listTar(gnuTar(), 10).entries.map((e) => e.name)).toEqual([long]);
  });

  it('stops at a header whose checksum is wrong, keeping the members before it', () => {
    const t = Buffer.from(makeTar({ 'a.txt': 'a', 'b.txt': 'b' }));
    const second = t.indexOf(Buffer.from('b.txt'), 512);
    const headerStart = second - (second % 512);
    t[headerStart + 100] ^= 0xff;
    const r = listTar(t, 10);
    expect(r.problem).toMatch(/bad header checksum/);
    expect(r.entries.map((e) => e.name)).toContain('a.txt');
    expect(r.entries.map((e) => e.name)).not.toContain('b.txt');
  });

  it('stops at maxEntries', () => {
    const t = makeTar(Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`f${i}`, 'x'])));
    expect(listTar(t, 3)).toMatchObject({ truncated: true });
  });
});
