/**
 * Times for tests of the DMARC report runs that do not depend on the hour the suite runs at.
 *
 * A day's report is due only once the day is over and the grace after it has passed
 * (DEFAULT_GRACE_SEC, 10 minutes). "24 hours ago" is in a due day except in the first
 * ten minutes after midnight UTC, and mail sent just before midnight lands in two days:
 * a CI run at 00:04 UTC failed six tests that way.
 */
import { DEFAULT_GRACE_SEC } from '../../src/services/dmarc-reports/run';

const DAY_MS = 86_400_000;
const MARGIN_MS = 2 * DEFAULT_GRACE_SEC * 1000;

/** Noon of the latest UTC day whose report is due now (yesterday, or the day before it just after midnight). */
export function dueDayTime(now = Date.now()): Date {
  const end = Math.floor((now - MARGIN_MS) / DAY_MS) * DAY_MS;
  return new Date(end - DAY_MS / 2);
}

/** A time at which today's report is due: past the end of today, with the grace and a margin. */
export function afterToday(now = Date.now()): Date {
  return new Date(Math.floor(now / DAY_MS) * DAY_MS + DAY_MS + MARGIN_MS);
}

/**
 * Waits past midnight UTC when less than `needMs` of today is left, so a test that sends mail
 * and then reads today's records finds them all in one day (the test's timeout must allow `needMs`).
 */
export async function clearOfMidnight(needMs: number): Promise<void> {
  const left = DAY_MS - (Date.now() % DAY_MS);
  if (left < needMs) await new Promise((r) => setTimeout(r, left + 1000));
}
