/**
 * `postseal dmarc report|stats`: the DMARC aggregate reports (services.dmarcReports,
 * docs/dmarc-reports.md) by hand, on the configured store (store section of the main file).
 *
 * - `report`: one report pass now, as the service would run it (same locks, same removal of
 *   sent records); `--dry-run` builds the reports without sending or removing anything, and
 *   with `--out DIR` writes each gzip file there under its RFC 7489 name.
 * - `stats DOMAIN`: per stored day, how many messages, how many passed DMARC, the dispositions
 *   and the busiest source addresses; nothing is removed.
 *
 * Prints one line per report or day; exits 0, or 1 when a report owed could not be sent
 * (send-failed, dns-temperror, given-up, too-big, destination-limit) or the configuration is
 * invalid (CFG_*), 2 on usage errors. `waiting` (a back-off, or another period's DNS failure in
 * this run, itself a dns-temperror line) and `locked` (another sender has it) exit 0: still owed.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { isPostsealError } from '../errors';
import { createDnsResolver } from '../lib/dns';
import { createLogger } from '../lib/log';
import { DownstreamPool } from '../reinject/pool';
import { poolSender, reportSettingsFor, reportSigner, runReports } from '../services/dmarc-reports';
import { openStore } from '../store';
import { StoredDmarcResults, type StoredRow } from '../store/dmarc-results';
import { dayOf, parsePeriod } from '../lib/dmarc-report/period';
import { UsageError, loadOrExplain, parse, withUsage } from './args';

const help = `Usage: postseal dmarc report [--since YYYY-MM-DD] [--dry-run [--out DIR]] [--config FILE] [--dns HOST:PORT]
       postseal dmarc stats DOMAIN [--config FILE]

report: send the aggregate reports of finished report periods now, as services.dmarcReports does
  --since DAY     only periods of this UTC day and later
  --dry-run       build the reports, send and remove nothing
  --out DIR       with --dry-run: write each report's .xml.gz file into DIR
  --dns HOST:PORT ask this DNS server instead of dns.servers of the config
stats: the stored DMARC results of one policy domain, per UTC day`;

const DAY = /^\d{4}-\d{2}-\d{2}$/;
/**
 * Outcomes of a report owed and not sent (exit 1): to try again, or dropped (given up, too big
 * for every address, the destination's daily cap). Before, only the first two counted, and a
 * cron job saw 0 for a period whose records were dropped.
 */
const NOT_SENT = new Set(['send-failed', 'dns-temperror', 'given-up', 'too-big', 'destination-limit']);

export function runDmarc(args: string[]): Promise<number> {
  return withUsage(async () => {
    const {
      values,
      positionals,
      help: h,
    } = parse(
      args,
      { config: { type: 'string', short: 'c' }, since: { type: 'string' }, 'dry-run': { type: 'boolean', default: false }, out: { type: 'string' }, dns: { type: 'string' } },
      help,
    );
    if (h) {
      process.stdout.write(`${h}\n`);
      return 0;
    }
    const [sub, ...rest] = positionals;
    if (sub === 'report' && rest.length) throw new UsageError(`report takes no arguments\n\n${help}`);
    if (sub === 'stats' && rest.length !== 1) throw new UsageError(`stats needs one DOMAIN\n\n${help}`);
    if (sub !== 'report' && sub !== 'stats') throw new UsageError(`expected report or stats\n\n${help}`);
    if (values.since !== undefined && !DAY.test(values.since)) throw new UsageError(`--since wants YYYY-MM-DD\n\n${help}`);
    if (values.out !== undefined && !values['dry-run']) throw new UsageError(`--out goes with --dry-run\n\n${help}`);
    const config = loadOrExplain(values.config);
    if (!config) return 1;
    // The resolver's sockets and timers do not hold the event loop (they are unref'd for the
    // daemon); without this, node would exit in the middle of a lookup with nothing printed.
    const keepAlive = setInterval(() => undefined, 1 << 30);
    try {
      return await dmarc(config, sub, rest, values);
    } finally {
      clearInterval(keepAlive);
    }
  });
}

async function dmarc(
  config: NonNullable<ReturnType<typeof loadOrExplain>>,
  sub: 'report' | 'stats',
  rest: string[],
  values: { since?: string; 'dry-run'?: boolean; out?: string; dns?: string },
): Promise<number> {
  const log = createLogger('silent');
  let store: Awaited<ReturnType<typeof openStore>>;
  try {
    store = await openStore(config.main.store, config.file, log);
  } catch (err) {
    if (!isPostsealError(err)) throw err;
    process.stderr.write(`postseal: ${err.code}: ${err.message}\n`);
    return 1;
  }
  try {
    const results = new StoredDmarcResults(store);
    if (sub === 'stats') return await stats(results, rest[0].toLowerCase(), values.since);
    let s: ReturnType<typeof reportSettingsFor>;
    try {
      s = reportSettingsFor(config);
    } catch (err) {
      if (!isPostsealError(err)) throw err;
      process.stderr.write(`postseal: configuration error ${err.code}\n${err.message}\n`);
      return 1;
    }
    const resolver = createDnsResolver(values.dns ? { ...config.main.dns, servers: [values.dns] } : config.main.dns);
    const pool = new DownstreamPool(s.target, config.hostname, log);
    try {
      const now = () => new Date();
      const deps = { store, results, resolver, send: poolSender(pool), now, owner: `cli:${process.pid}`, sign: reportSigner(s.keys, now) };
      const out = await runReports(deps, s.settings, { since: values.since, dryRun: values['dry-run'] });
      if (values.out) mkdirSync(values.out, { recursive: true });
      let failed = false;
      for (const o of out) {
        if (values.out && o.report) writeFileSync(path.join(values.out, o.report.fileName), o.report.gzip);
        failed ||= NOT_SENT.has(o.status);
        const file = o.report ? ` ${o.report.fileName}` : '';
        process.stdout.write(
          `${o.policyDomain} ${o.period} ${o.status} messages=${o.messages}${o.to.length ? ` to=${o.to.join(',')}` : ''}${file}${o.reason ? ` (${o.reason})` : ''}\n`,
        );
      }
      if (!out.length) process.stdout.write('no finished report periods with DMARC results to report\n');
      return failed ? 1 : 0;
    } finally {
      await pool.close();
    }
  } finally {
    await store.close();
  }
}

async function stats(results: StoredDmarcResults, domain: string, since?: string): Promise<number> {
  // A day's report periods (hours, when the domain's ri= asked for them) are summed.
  const byDay = new Map<string, string[]>();
  for (const { policyDomain, period } of await results.periods()) {
    const p = parsePeriod(period);
    if (policyDomain !== domain || !p || (since && dayOf(p) < since)) continue;
    byDay.set(dayOf(p), [...(byDay.get(dayOf(p)) ?? []), period]);
  }
  const days = [...byDay.keys()].sort();
  if (!days.length) {
    process.stdout.write(`${domain}: no stored DMARC results\n`);
    return 0;
  }
  for (const day of days) {
    // Stored rows carry their message counts.
    const records: StoredRow[] = [];
    let over = 0;
    for (const period of byDay.get(day) ?? []) {
      const read = await results.peek(domain, period);
      records.push(...read.records);
      over += read.over;
    }
    const count = (pick: (r: (typeof records)[number]) => string) => {
      const m = new Map<string, number>();
      for (const r of records) m.set(pick(r), (m.get(pick(r)) ?? 0) + r.count);
      return [...m.entries()].sort((a, b) => b[1] - a[1]);
    };
    const fmt = (e: [string, number][]) => e.map(([k, n]) => `${k}=${n}`).join(' ');
    process.stdout.write(
      `${domain} ${day} messages=${records.reduce((n, r) => n + r.count, 0) + over} ${fmt(count((r) => `dmarc:${r.result}`))} ${fmt(count((r) => `disposition:${r.disposition}`))} sources: ${fmt(count((r) => r.sourceIp ?? 'unknown').slice(0, 5))}\n`,
    );
  }
  return 0;
}
