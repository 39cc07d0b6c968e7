/**
 * A failure that repeats with every message is logged once an interval, with the count of the
 * lines held back since the last one written.
 */
import { LogLimit } from '../../src/lib/log-limit';

function limitAt(start: number) {
  let now = start;
  const limit = new LogLimit(60_000, () => now);
  return { limit, set: (t: number) => void (now = t) };
}

test('writes the first failure at once, holds the next ones back for the interval, then writes one with their count', () => {
  const { limit, set } = limitAt(1_000_000);
  expect(limit.take()).toBe(0);
  set(1_030_000);
  expect(limit.take()).toBeUndefined();
  expect(limit.take()).toBeUndefined();
  set(1_060_000);
  expect(limit.take()).toBe(2);
});

test('a wall clock set back (an NTP step) does not silence the failure until the clock has caught up again', () => {
  const { limit, set } = limitAt(10_000_000);
  expect(limit.take()).toBe(0);
  // An hour back: the old check read the negative difference as "within the minute" for an hour.
  set(10_000_000 - 3_600_000);
  expect(limit.take()).toBe(0);
  set(10_000_000 - 3_600_000 + 1_000);
  expect(limit.take()).toBeUndefined();
});
