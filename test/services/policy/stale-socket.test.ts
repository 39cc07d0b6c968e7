import { mkdtempSync, existsSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { removeStaleSocket } from '../../../src/services/policy/stale-socket';
import { nodeBin } from '../../helpers/cli';

const dir = () => mkdtempSync(path.join(tmpdir(), 'postseal-stale-'));

describe('a policy socket file left behind', () => {
  it('is removed when the process that bound it is gone', async () => {
    const file = path.join(dir(), 'policy');
    // A process binds the path and is killed: its socket file stays, with nobody behind it.
    const child = spawn(nodeBin, ['-e', `require('node:net').createServer().listen(${JSON.stringify(file)}, () => console.log('up'))`]);
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    expect(existsSync(file)).toBe(true);
    expect(await removeStaleSocket(file)).toBe(true);
    expect(existsSync(file)).toBe(false);
  });

  it('is left alone while a live process answers on it', async () => {
    const file = path.join(dir(), 'policy');
    const live = net.createServer((s) => s.end());
    await new Promise<void>((resolve) => live.listen(file, () => resolve()));
    try {
      expect(await removeStaleSocket(file)).toBe(false);
      expect(existsSync(file)).toBe(true);
    } finally {
      await new Promise((r) => live.close(r));
    }
  });

  it('leaves a path that is no socket alone', async () => {
    const file = path.join(dir(), 'precious');
    writeFileSync(file, 'keep me');
    expect(await removeStaleSocket(file)).toBe(false);
    expect(existsSync(file)).toBe(true);
  });
});
