/**
 * Gives back the memory the cluster's primary used to start: one memory-reducing full
 * collection (V8's "last resort" one: the old generation compacted, the young generation
 * shrunk to its starting size) once every worker is ready. Loading and checking the
 * configuration grows the primary's young generation to node's default 16 MB semi-spaces, and
 * V8 never shrinks it in a process that then has little to do (its memory reducer starts only
 * after a full collection, which such a process never needs). Measured with the benchmark's
 * banks and two workers: the primary's idle RSS 103 MB before, 79–80 MB after; the collection
 * takes 40–80 ms, before "postseal started".
 *
 * Not done in the workers, though their idle RSS fell the same way (104–106 → 85 MB): in
 * alternated runs of the proxy benchmark (bench/README.md "Idle memory") the workers then
 * spent 20–30 % more CPU per message under load (originating 20 KB 1.71–1.72 against
 * 1.33–1.44 ms, pass-through 0.49–0.63 against 0.37–0.38 ms) with a heap kept smaller (peak
 * RSS 320–335 against 466–480 MB for the three processes): a collection that reduces memory
 * leaves V8 favouring memory over speed, which is the wrong trade for the message path.
 *
 * How: Node has no call for a memory-reducing collection without `--expose-gc`; that flag,
 * set through `v8.setFlagsFromString`, gives a `gc` function to contexts made after it, so one
 * is taken from a new `vm` context (the process's own global gets none). A Node where that
 * fails leaves the memory as it was and says so in the log.
 */
import { performance } from 'node:perf_hooks';
import v8 from 'node:v8';
import vm from 'node:vm';
import type { Logger } from '../lib/log';

type GcFunction = (options: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;

function memoryReducingGc(): GcFunction | null {
  try {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as unknown;
    return typeof gc === 'function' ? (gc as GcFunction) : null;
  } catch {
    return null;
  }
}

function youngGenerationBytes(): number {
  return v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0;
}

/** One memory-reducing collection now; logs what it gave back (debug), or that it cannot (warn). */
export function releaseIdleMemory(log: Logger): void {
  const gc = memoryReducingGc();
  if (!gc) return void log.warn('cannot release start-up memory: this Node gives no memory-reducing collection');
  const before = process.memoryUsage();
  const youngBefore = youngGenerationBytes();
  const started = performance.now();
  try {
    gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  } catch (err) {
    // A Node whose gc() takes other options: the memory stays, the primary runs on.
    return void log.warn({ err }, 'cannot release start-up memory: the collection failed');
  }
  const after = process.memoryUsage();
  log.debug(
    {
      ms: Math.round(performance.now() - started),
      heapMb: [mb(before.heapTotal), mb(after.heapTotal)],
      youngMb: [mb(youngBefore), mb(youngGenerationBytes())],
      rssMb: [mb(before.rss), mb(after.rss)],
    },
    'start-up memory released',
  );
}

function mb(bytes: number): number {
  return Math.round((bytes / 1048576) * 10) / 10;
}
