/**
 * The daemon's logger writes standard output in blocks: a line must still show up soon while
 * the process runs on, and every line must be out when the process exits.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { nodeBin, root } from '../helpers/cli';

const logModule = path.join(root, 'dist/lib/log.js');

function run(script: string, env: NodeJS.ProcessEnv = {}): Promise<{ firstLineAfterMs: number; lines: string[] }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    let firstLineAfterMs = -1;
    let out = '';
    const child = spawn(nodeBin, ['-e', `const log = require(${JSON.stringify(logModule)}).createLogger('info'); ${script}`], { env: { ...process.env, ...env } });
    child.stdout.on('data', (d: Buffer) => {
      if (firstLineAfterMs < 0) firstLineAfterMs = performance.now() - started;
      out += d.toString();
    });
    child.on('error', reject);
    child.on('close', () => resolve({ firstLineAfterMs, lines: out.split('\n').filter(Boolean) }));
  });
}

test('a line is written while the process goes on, without waiting for its exit or a full block', async () => {
  const { firstLineAfterMs, lines } = await run(`log.info('one'); setTimeout(() => {}, 3000);`);
  expect(lines.map((l) => JSON.parse(l).msg)).toEqual(['one']);
  expect(firstLineAfterMs).toBeLessThan(2500);
});

test('every line is out when the process exits at once, and more than a block of them arrives whole', async () => {
  const { lines } = await run(`for (let i = 0; i < 500; i++) log.info({ i }, 'line'); process.exit(0);`);
  expect(lines.map((l) => JSON.parse(l).i)).toEqual(Array.from({ length: 500 }, (_, i) => i));
});

test('an idle process is not woken by the logger: no empty write once its lines are out', async () => {
  // Counts the zero-byte writes to standard output (sonic-boom calls fs.write at each write)
  // while the process idles 1.5 s after one line; the old flush made one every 200 ms.
  const count = `const fs = require('fs'); let empty = 0; const w = fs.write;
    fs.write = function (fd, data, ...rest) { if (fd === 1 && data.length === 0) empty++; return w.call(this, fd, data, ...rest); };`;
  const { lines } = await run(`${count} log.info('one'); setTimeout(() => log.info({ empty }, 'idle'), 1500);`);
  expect(lines.map((l) => JSON.parse(l).msg)).toEqual(['one', 'idle']);
  expect(JSON.parse(lines[1]).empty).toBeLessThanOrEqual(1);
});

test('a line made while an empty flush waits for a busy thread pool is written once that flush ends, not held until the next line', async () => {
  // The pool's one thread reads a fifo that nothing writes to yet; the flush after the first
  // line (an empty write) waits behind it, and the flush due after the second line comes while
  // it waits. Then the fifo is written, the empty write ends, and the process idles a second
  // before it is killed (SIGKILL: no flush at exit). The old code wrote no more: 'b' was lost.
  const script = `const fs = require('fs'), os = require('os'), path = require('path');
    const stream = log[require(${JSON.stringify(require.resolve('pino'))}).symbols.streamSym];
    const fifo = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'log-')), 'block');
    require('child_process').execFileSync('mkfifo', [fifo]);
    const fd = fs.openSync(fifo, 'r+');
    setTimeout(() => {}, 60000);
    log.info('a');
    stream.once('write', () => {
      fs.read(fd, Buffer.alloc(1), 0, 1, null, () => fs.rmSync(path.dirname(fifo), { recursive: true }));
      setTimeout(() => {
        log.info('b');
        setTimeout(() => {
          stream.once('write', () => setTimeout(() => process.kill(process.pid, 'SIGKILL'), 1000));
          fs.writeSync(fd, 'x');
        }, 600);
      }, 300);
    });`;
  const { lines } = await run(script, { UV_THREADPOOL_SIZE: '1' });
  expect(lines.map((l) => JSON.parse(l).msg)).toEqual(['a', 'b']);
});
