/**
 * The period an aggregate report covers (RFC 7489 6.3 `ri=`, 7.2): the domain's requested
 * interval made into a UTC-aligned period that divides the day, so that every period starts
 * and ends on the same clock hours every day and a day is covered without gaps or overlaps.
 *
 * The rule (docs/dmarc-reports.md, "What is sent"): the periods are 1, 2, 3, 4, 6, 8, 12 and
 * 24 hours. `ri=` asks for reports "separated by no more than" its seconds, so the period is
 * the longest one that is not longer than ri (ri=5000 gives 1 hour, ri=18000 gives 4 hours);
 * none shorter than the configured minimum (services.dmarcReports.minIntervalSec, itself
 * rounded up to a period), and never longer than a day (ri=100000 and an absent ri: daily).
 * RFC 7489 asks for daily reports from every receiver and hourly ones on a best-effort basis;
 * DMARCbis drops ri= and keeps daily reports as the default.
 *
 * A period has a name used in store keys, locks and log lines: a daily one is its UTC date
 * (`2026-12-06`, as before periods shorter than a day existed), a shorter one its start hour
 * and length (`2026-12-06T03Z/1h`).
 *
 * Fails: never throws; a name that is not one of ours parses to undefined.
 */

export const DAY_SEC = 86400;
/** The period lengths in hours: the divisors of 24, so periods are aligned to the UTC day. */
export const PERIOD_HOURS: readonly number[] = [1, 2, 3, 4, 6, 8, 12, 24];
/** The shortest period: the default of services.dmarcReports.minIntervalSec. */
export const SHORTEST_PERIOD_SEC = 3600;

export interface ReportPeriod {
  /** `YYYY-MM-DD` for a day, `YYYY-MM-DDTHHZ/<n>h` for a shorter period. */
  readonly id: string;
  /** Unix seconds: the first second of the period. */
  readonly begin: number;
  /** Unix seconds: the last second of the period (inclusive, as the report's date_range). */
  readonly end: number;
  readonly lengthSec: number;
}

/**
 * The period length for a requested interval (seconds; undefined: none requested, daily),
 * with `minSec` the shortest period this receiver sends.
 */
export function periodLengthSec(requestedSec: number | undefined, minSec: number): number {
  const allowed = PERIOD_HOURS.map((h) => h * 3600).filter((s) => s >= Math.min(minSec, DAY_SEC));
  const wanted = requestedSec === undefined || !Number.isFinite(requestedSec) ? DAY_SEC : requestedSec;
  // The longest allowed period within ri; ri below every allowed period gets the shortest.
  return allowed.filter((s) => s <= wanted).pop() ?? allowed[0];
}

/** The period of `lengthSec` (one of PERIOD_HOURS) that contains the time `t`. */
export function periodOf(t: Date, lengthSec: number): ReportPeriod {
  const sec = Math.floor(t.getTime() / 1000);
  const begin = sec - (((sec % lengthSec) + lengthSec) % lengthSec);
  return make(begin, lengthSec);
}

function make(begin: number, lengthSec: number): ReportPeriod {
  const iso = new Date(begin * 1000).toISOString();
  const id = lengthSec === DAY_SEC ? iso.slice(0, 10) : `${iso.slice(0, 13)}Z/${lengthSec / 3600}h`;
  return { id, begin, end: begin + lengthSec - 1, lengthSec };
}

const NAME = /^(\d{4}-\d{2}-\d{2})(?:T(\d{2})Z\/(\d{1,2})h)?$/;

/** The period a name stands for, or undefined when it is not a well-formed one (keys written by something else). */
export function parsePeriod(id: string): ReportPeriod | undefined {
  const m = NAME.exec(id);
  if (!m) return undefined;
  const day = Date.parse(`${m[1]}T00:00:00Z`);
  if (!Number.isFinite(day) || new Date(day).toISOString().slice(0, 10) !== m[1]) return undefined;
  const hours = m[3] === undefined ? 24 : Number(m[3]);
  const hour = m[2] === undefined ? 0 : Number(m[2]);
  // One name per period: a day is never written as T00Z/24h, and a start is on its length's grid.
  if (!PERIOD_HOURS.includes(hours) || (m[3] !== undefined && hours === 24) || hour % hours !== 0 || hour > 23) return undefined;
  const p = make(day / 1000 + hour * 3600, hours * 3600);
  return p.id === id ? p : undefined;
}

/** The UTC day (YYYY-MM-DD) a period lies in. */
export function dayOf(p: ReportPeriod): string {
  return p.id.slice(0, 10);
}
