/**
 * The pending index of DMARC report periods (store/dmarc-results.ts): which policy domains
 * and report periods have rows, readable oldest first so that a report sender never has
 * finished periods crowded out by running ones, whatever the number of keys in the store.
 *
 * In the Store (store/store.ts): one list per UTC day of period, "dmarc-due:<YYYY-MM-DD>",
 * items "<policy domain> <period>" (period names of lib/dmarc-report/period.ts), appended when a
 * domain-period gets its first row. listDue() scans for the day lists (at most one per day of
 * retention: a few dozen keys), sorts them and reads them in order. pruneDue() drops entries
 * whose rows are gone: the day's list is taken (takeAll) and the rest appended again, so an
 * entry appended meanwhile lands in the taken list or the new one, never lost. (A process that
 * dies between the take and the appends loses those entries: their rows are then not reported
 * and expire with their retention.)
 *
 * Fails: rejects with STORE_UNAVAILABLE.
 */
import { SCAN_MAX_LIMIT, type Store } from './store';

export interface DomainPeriod {
  readonly policyDomain: string;
  readonly period: string;
}

const DUE_PREFIX = 'dmarc-due:';

/** The UTC day of a period name: its first ten characters (`2026-12-06`, `2026-12-06T03Z/1h`). */
function dayOf(period: string): string {
  return period.slice(0, 10);
}

export async function addDue(store: Store, d: DomainPeriod, ttlMs: number): Promise<void> {
  await store.append(DUE_PREFIX + dayOf(d.period), `${d.policyDomain} ${d.period}`, { ttlMs });
}

/** At most `limit` pending domain-periods, oldest day first, each once. */
export async function listDue(store: Store, limit: number): Promise<DomainPeriod[]> {
  const days = (await store.scan(DUE_PREFIX, SCAN_MAX_LIMIT)).map((k) => k.slice(DUE_PREFIX.length)).sort();
  const out: DomainPeriod[] = [];
  const seen = new Set<string>();
  for (const day of days) {
    for (const item of await store.range(DUE_PREFIX + day, SCAN_MAX_LIMIT)) {
      const cut = item.indexOf(' ');
      if (cut <= 0 || seen.has(item)) continue;
      seen.add(item);
      out.push({ policyDomain: item.slice(0, cut), period: item.slice(cut + 1) });
      if (out.length >= limit) return out;
    }
  }
  return out;
}

/** Drops the entries of `done` for which `isGone` holds, and duplicates. */
export async function pruneDue(store: Store, done: readonly DomainPeriod[], isGone: (d: DomainPeriod) => Promise<boolean>, ttlMs: number): Promise<void> {
  const byDay = new Map<string, Set<string>>();
  for (const d of done) {
    const set = byDay.get(dayOf(d.period)) ?? new Set<string>();
    set.add(`${d.policyDomain} ${d.period}`);
    byDay.set(dayOf(d.period), set);
  }
  for (const [day, drop] of byDay) {
    const key = DUE_PREFIX + day;
    const kept = new Set<string>();
    for (const item of await store.takeAll(key)) {
      const cut = item.indexOf(' ');
      if (cut <= 0 || kept.has(item)) continue;
      if (drop.has(item) && (await isGone({ policyDomain: item.slice(0, cut), period: item.slice(cut + 1) }))) continue;
      kept.add(item);
      await store.append(key, item, { ttlMs });
    }
  }
}
