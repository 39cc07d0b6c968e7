/**
 * Giving start-up memory back (src/cluster/idle-memory.ts), in this process: a young
 * generation grown by work shrinks after the memory-reducing collection, and the log line says
 * by how much.
 */
import { Writable } from 'node:stream';
import v8 from 'node:v8';
import { releaseIdleMemory } from '../../src/cluster/idle-memory';
import { createLogger } from '../../src/lib/log';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _e, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { log: createLogger('debug', sink), lines };
}

const young = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.space_size;

/** Objects that survive several scavenges, as start-up's do: V8 grows the young generation for them. */
function growYoung(): void {
  let keep: object[][] = [];
  for (let round = 0; round < 40; round++) {
    keep.push(Array.from({ length: 20_000 }, (_, i) => ({ i, s: `x${i}` })));
    if (keep.length > 8) keep = keep.slice(-8);
  }
}

async function until(pred: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('not within the time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('giving start-up memory back', () => {
  it('shrinks a grown young generation to its starting size and logs before and after', async () => {
    growYoung();
    const grown = young();
    expect(grown).toBeGreaterThan(4 * 1024 * 1024);
    const { log, lines } = capture();
    releaseIdleMemory(log);
    expect(young()).toBeLessThan(grown);
    expect(young()).toBeLessThanOrEqual(2 * 1024 * 1024);
    await until(() => lines.some((l) => l.msg === 'start-up memory released'));
    const line = lines.find((l) => l.msg === 'start-up memory released')!;
    const [before, after] = line.youngMb as number[];
    expect(after).toBeLessThan(before);
  });
});
