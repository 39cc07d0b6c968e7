/**
 * The report period of a requested ri= (src/lib/dmarc-report/period.ts): a UTC-aligned divisor
 * of the day, not longer than ri, not shorter than the minimum, never longer than a day.
 */
import { DAY_SEC, dayOf, parsePeriod, periodLengthSec, periodOf } from '../../../src/lib/dmarc-report/period';
import { parseDmarcRecord, requestedIntervalSec } from '../../../src/lib/dmarc-report/policy';

const HOUR = 3600;

describe('periodLengthSec', () => {
  test('ri=3600 gives hourly periods', () => {
    expect(periodLengthSec(3600, HOUR)).toBe(HOUR);
  });

  test('ri=86400 and an absent ri give daily periods', () => {
    expect(periodLengthSec(86400, HOUR)).toBe(DAY_SEC);
    expect(periodLengthSec(undefined, HOUR)).toBe(DAY_SEC);
  });

  test('ri=60 is raised to the minimum period', () => {
    expect(periodLengthSec(60, HOUR)).toBe(HOUR);
    expect(periodLengthSec(0, HOUR)).toBe(HOUR);
    expect(periodLengthSec(60, 4 * HOUR)).toBe(4 * HOUR);
  });

  test('ri longer than a day gives daily periods', () => {
    expect(periodLengthSec(100000, HOUR)).toBe(DAY_SEC);
    expect(periodLengthSec(0xffffffff, HOUR)).toBe(DAY_SEC);
  });

  test('odd values go down to the longest divisor of the day within ri', () => {
    expect(periodLengthSec(5000, HOUR)).toBe(HOUR);
    expect(periodLengthSec(7199, HOUR)).toBe(HOUR);
    expect(periodLengthSec(7200, HOUR)).toBe(2 * HOUR);
    expect(periodLengthSec(5 * HOUR, HOUR)).toBe(4 * HOUR);
    expect(periodLengthSec(10 * HOUR, HOUR)).toBe(8 * HOUR);
    expect(periodLengthSec(80000, HOUR)).toBe(12 * HOUR);
  });

  test('a minimum that is not a period length is rounded up to one', () => {
    expect(periodLengthSec(3600, 5400)).toBe(2 * HOUR);
    expect(periodLengthSec(10 * HOUR, 5 * HOUR)).toBe(8 * HOUR);
    expect(periodLengthSec(3600, 13 * HOUR)).toBe(DAY_SEC);
  });
});

describe('periodOf and parsePeriod', () => {
  test('an hourly period runs from the full hour to its last second, named by its start hour', () => {
    const p = periodOf(new Date('2026-12-06T03:59:59.900Z'), HOUR);
    expect(p).toEqual({ id: '2026-12-06T03Z/1h', begin: Date.parse('2026-12-06T03:00:00Z') / 1000, end: Date.parse('2026-12-06T03:59:59Z') / 1000, lengthSec: HOUR });
    expect(dayOf(p)).toBe('2026-12-06');
  });

  test('a daily period is named by its UTC date and covers 00:00:00 to 23:59:59', () => {
    const p = periodOf(new Date('2026-12-06T23:59:59.999Z'), DAY_SEC);
    expect(p).toEqual({ id: '2026-12-06', begin: Date.parse('2026-12-06T00:00:00Z') / 1000, end: Date.parse('2026-12-06T23:59:59Z') / 1000, lengthSec: DAY_SEC });
  });

  test('periods are aligned to UTC midnight', () => {
    expect(periodOf(new Date('2026-12-06T20:00:00Z'), 8 * HOUR).id).toBe('2026-12-06T16Z/8h');
    expect(periodOf(new Date('2026-12-06T02:30:00Z'), 3 * HOUR).id).toBe('2026-12-06T00Z/3h');
  });

  test('a name parses back to its period', () => {
    for (const [t, len] of [
      ['2026-12-06T03:10:00Z', HOUR],
      ['2026-12-31T23:00:00Z', 12 * HOUR],
      ['2024-02-29T12:00:00Z', DAY_SEC],
    ] as const) {
      const p = periodOf(new Date(t), len);
      expect(parsePeriod(p.id)).toEqual(p);
    }
  });

  test('names that are not ours parse to nothing', () => {
    for (const bad of ['2026-12-06T03Z/5h', '2026-12-06T03Z/2h', '2026-12-06T00Z/24h', '2026-12-06T3Z/1h', '2026-12-06T03Z/01h', '2026-02-30', '2026-12-06T24Z/1h', 'x', '']) {
      expect(parsePeriod(bad)).toBeUndefined();
    }
  });
});

describe('requestedIntervalSec', () => {
  test('reads ri= as published, and the default for an absent or malformed one', () => {
    expect(requestedIntervalSec('v=DMARC1; p=none; ri=3600')).toBe(3600);
    expect(requestedIntervalSec('v=DMARC1; p=none; RI = 60 ')).toBe(60);
    expect(requestedIntervalSec('v=DMARC1; p=none')).toBe(86400);
    for (const bad of ['-1', '1e4', '3600.5', 'hourly', '4294967296', '']) expect(requestedIntervalSec(`v=DMARC1; p=none; ri=${bad}`)).toBe(86400);
    expect(parseDmarcRecord('a.test', 'v=DMARC1; p=none; ri=5000')?.intervalSec).toBe(5000);
  });
});
