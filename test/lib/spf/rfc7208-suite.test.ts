/**
 * The OpenSPF RFC 7208 conformance suite (release 2014.04, 203 cases), read from Debian's
 * python3-spf (scripts/install-test-deps.sh installs it), each scenario's zone served by the
 * loopback DNS server and each case run through checkSpf. The zone follows pyspf's driver
 * (testspf.py): a name's SPF-type records become its TXT records when it has no TXT record
 * (type SPF itself is never asked for, RFC 7208 §3.1), "TXT: NONE" means none, and a bare
 * TIMEOUT drops queries for every type that has no record before it. A case without
 * exp= text expects the driver's default explanation, "DEFAULT".
 *
 * Missing suite file: the first test fails, it is not skipped.
 */
import { existsSync, readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { parseAllDocuments } from 'yaml';
import { createDnsResolver, type DnsResolver } from '../../../src/lib/dns';
import { checkSpf } from '../../../src/lib/spf';
import { startDnsServer, type DnsServer, type Zone, type ZoneEntry } from '../../helpers/dns-server';

const SUITE = '/usr/share/doc/python3-spf/rfc7208-tests.yml.gz';
const CASES_IN_SUITE = 203;
const QUERY_TYPES = ['A', 'AAAA', 'TXT', 'MX', 'PTR', 'CNAME', 'NS'];

interface SuiteCase {
  name: string;
  host: string;
  mailfrom: string;
  helo: string;
  result: string[];
  explanation?: string;
}

interface Scenario {
  description: string;
  zone: Zone;
  cases: SuiteCase[];
}

function loadSuite(): Scenario[] {
  const docs = parseAllDocuments(gunzipSync(readFileSync(SUITE)).toString('utf8'));
  return (Array.isArray(docs) ? docs : [docs]).map((doc) => {
    const d = doc.toJS() as { description: string; tests: Record<string, Record<string, unknown>>; zonedata: Record<string, unknown[]> };
    return {
      description: d.description,
      zone: Object.fromEntries(Object.entries(d.zonedata ?? {}).map(([name, records]) => [dnsName(name), zoneEntry(records)])),
      cases: Object.entries(d.tests).map(([name, t]) => ({
        name,
        host: String(t.host),
        mailfrom: String(t.mailfrom ?? ''),
        helo: String(t.helo ?? ''),
        result: ([] as unknown[]).concat(t.result).map(String),
        explanation: t.explanation === undefined ? undefined : String(t.explanation),
      })),
    };
  });
}

function dnsName(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

/** One name's records as testspf.py's getrdata() and DNSLookup() see them. */
function zoneEntry(items: unknown[]): ZoneEntry {
  const list: ([string, unknown] | 'TIMEOUT')[] = [];
  const generated: [string, unknown][] = [];
  const hasTxt = items.some((i) => typeof i === 'object' && i !== null && 'TXT' in i);
  for (const item of items) {
    if (item === 'TIMEOUT') {
      list.push('TIMEOUT');
      continue;
    }
    const [type, value] = Object.entries(item as object)[0] as [string, unknown];
    if (value === 'TIMEOUT') throw new Error(`per-type TIMEOUT for ${type} is not supported by this driver`);
    if (type === 'SPF' && !hasTxt) generated.push(['TXT', value]);
    if (value !== 'NONE') list.push([type, value]);
  }
  list.push(...generated);
  const timeoutAt = list.indexOf('TIMEOUT');
  const served = (timeoutAt < 0 ? list : list.slice(0, timeoutAt)) as [string, unknown][];
  const entry: ZoneEntry = {};
  for (const [type, value] of served) {
    if (type === 'TXT') (entry.TXT ??= []).push(typeof value === 'string' ? [value] : (value as string[]));
    else if (type === 'A' || type === 'AAAA' || type === 'PTR') (entry[type] ??= []).push(String(value));
    else if (type === 'MX') (entry.MX ??= []).push(value as [number, string]);
    else if (type === 'CNAME') entry.CNAME = dnsName(String(value));
    else if (type !== 'SPF') throw new Error(`record type ${type} is not supported by this driver`);
  }
  if (timeoutAt >= 0) {
    entry.behaviour = 'timeout';
    entry.behaviourTypes = QUERY_TYPES.filter((t) => !served.some(([type]) => type === t));
  }
  return entry;
}

let scenarios: Scenario[] = [];
let loadError: unknown;
try {
  scenarios = loadSuite();
} catch (err) {
  loadError = err;
}

let dns: DnsServer;
let resolver: DnsResolver;
beforeAll(async () => {
  dns = await startDnsServer({});
  resolver = createDnsResolver({ servers: [dns.server], timeoutMs: 200, retries: 0, cacheMaxEntries: 0, cacheMaxTtlSec: 0 });
});
afterAll(() => dns.close());

test(`the suite is installed (${SUITE}, Debian package python3-spf) and has ${CASES_IN_SUITE} cases`, () => {
  if (loadError) throw new Error(`cannot read the RFC 7208 suite ${SUITE} (apt-get install python3-spf): ${String(loadError)}`);
  expect(existsSync(SUITE)).toBe(true);
  expect(scenarios.reduce((n, s) => n + s.cases.length, 0)).toBe(CASES_IN_SUITE);
});

// Without the file there is no table to run (jest refuses an empty one); the test above fails.
const table = scenarios.map((s) => [s.description, s] as const);
if (table.length)
  describe.each(table)('%s', (_description, scenario) => {
    beforeAll(() => {
      dns.zone = scenario.zone;
    });

    test.each(scenario.cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
      const r = await checkSpf({ ip: c.host, sender: c.mailfrom, helo: c.helo, resolver });
      expect(c.result).toContain(r.result);
      if (c.explanation !== undefined) expect(r.explanation ?? 'DEFAULT').toBe(c.explanation);
    });
  });
