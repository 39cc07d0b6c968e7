import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { utcDay, StoredDmarcResults } from '../../src/store/dmarc-results';
import { openSqliteStore } from '../../src/store/sqlite';
import { startDnsServer, type DnsServer } from '../helpers/dns-server';
import { startSink, type Sink } from '../helpers/sink';
import { root } from '../helpers/cli';
import { dueDayTime } from '../helpers/report-day';

// The command runs as a child (dist/, built by `npm test`'s pretest), so spawnSync would block
// this process's DNS server and sink: run it asynchronously.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);
const nodeBin = path.join(root, 'node_modules/.bin/node');
const cliMain = path.join(root, 'dist/cli/main.js');
async function cli(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  try {
    const r = await run(nodeBin, [cliMain, ...args], { encoding: 'utf8', timeout: 30000 });
    return { status: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { status: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

let dns: DnsServer;
let sink: Sink;
let dir: string;
let file: string;
const yesterday = dueDayTime();
const day = utcDay(yesterday);
const dayBefore = utcDay(new Date(yesterday.getTime() - 24 * 3600 * 1000));
let hourlyFile: string;

beforeAll(async () => {
  dns = await startDnsServer({
    '_dmarc.a.test': { TXT: ['v=DMARC1; p=quarantine; rua=mailto:agg@a.test'] },
    '_dmarc.h.test': { TXT: ['v=DMARC1; p=none; ri=3600; rua=mailto:agg@h.test'] },
    '_dmarc.big.test': { TXT: ['v=DMARC1; p=none; rua=mailto:agg@big.test!1k'] },
  });
  sink = await startSink();
  dir = mkdtempSync(path.join(tmpdir(), 'dmarc-cli-'));
  mkdirSync(path.join(dir, 'banks'));
  const bank = YAML.parse(readFileSync(path.join(root, 'policy-banks/default.yaml'), 'utf8'));
  bank.notify = { protocol: 'smtp', host: '127.0.0.1', port: sink.port };
  writeFileSync(path.join(dir, 'banks', 'default.yaml'), YAML.stringify(bank));
  file = path.join(dir, 'postseal.yaml');
  writeFileSync(
    file,
    YAML.stringify({
      bankDir: 'banks',
      listeners: [{ port: 0, bank: 'default' }],
      hostname: 'mx.receiver.test',
      store: { backend: 'sqlite', sqlite: { file: 'state.db' } },
      services: { dmarcReports: { enabled: true, orgName: 'Receiver' } },
    }),
  );
  const store = openSqliteStore({ file: path.join(dir, 'state.db'), keyPrefix: 'postseal:', busyTimeoutMs: 2000 });
  const results = new StoredDmarcResults(store);
  for (const [ip, result, disposition] of [
    ['192.0.2.1', 'pass', 'none'],
    ['192.0.2.1', 'pass', 'none'],
    ['198.51.100.2', 'fail', 'quarantine'],
  ] as const) {
    await results.record({
      receivedAt: yesterday,
      sourceIp: ip,
      headerFrom: 'a.test',
      policyDomain: 'a.test',
      policy: 'quarantine',
      result,
      disposition,
      dkim: result === 'pass' ? [{ domain: 'a.test', selector: 's', result: 'pass' }] : [],
      spf: { domain: 'a.test', result: result === 'pass' ? 'pass' : 'fail' },
    });
  }
  await store.close();
  // A second store whose domain asked for hourly reports: two hours of yesterday, one of the day before.
  hourlyFile = path.join(dir, 'hourly.yaml');
  writeFileSync(hourlyFile, readFileSync(file, 'utf8').replace('file: state.db', 'file: hourly.db'));
  const hourly = openSqliteStore({ file: path.join(dir, 'hourly.db'), keyPrefix: 'postseal:', busyTimeoutMs: 2000 });
  for (const t of [`${dayBefore}T05:00:00Z`, `${day}T01:10:00Z`, `${day}T02:10:00Z`, `${day}T02:20:00Z`]) {
    await new StoredDmarcResults(hourly).record({
      receivedAt: new Date(t),
      sourceIp: '192.0.2.7',
      headerFrom: 'h.test',
      policyDomain: 'h.test',
      policy: 'none',
      result: 'pass',
      disposition: 'none',
      dkim: [{ domain: 'h.test', selector: 's', result: 'pass' }],
      requestedIntervalSec: 3600,
    });
  }
  await hourly.close();
});

afterAll(async () => {
  await sink.close();
  await dns.close();
});

describe('postseal dmarc', () => {
  test('stats summarises the stored results of a domain per day', async () => {
    const r = await cli(['dmarc', 'stats', 'a.test', '--config', file]);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`a.test ${day} messages=3 dmarc:pass=2 dmarc:fail=1 disposition:none=2 disposition:quarantine=1 sources: 192.0.2.1=2 198.51.100.2=1\n`);
  });

  test('report --dry-run --out writes the report file and sends and removes nothing', async () => {
    const out = path.join(dir, 'out');
    const r = await cli(['dmarc', 'report', '--dry-run', '--out', out, '--config', file, '--dns', dns.server]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const begin = Date.parse(`${day}T00:00:00Z`) / 1000;
    const name = `mx.receiver.test!a.test!${begin}!${begin + 86399}.xml.gz`;
    expect(r.stdout).toBe(`a.test ${day} dry-run messages=3 to=agg@a.test ${name}\n`);
    expect(readdirSync(out)).toEqual([name]);
    const xml = execFileSync('gzip', ['-dc', path.join(out, name)], { encoding: 'utf8' });
    expect(xml).toContain('<org_name>Receiver</org_name>');
    expect(sink.received).toHaveLength(0);
  });

  test('report sends the report through the notify target, after which stats has nothing left', async () => {
    const r = await cli(['dmarc', 'report', '--config', file, '--dns', dns.server]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^a\\.test ${day} sent messages=3 to=agg@a\\.test `));
    expect(sink.received).toHaveLength(1);
    expect(sink.received[0].recipients.map((x) => x.address)).toEqual(['agg@a.test']);
    expect((await cli(['dmarc', 'stats', 'a.test', '--config', file])).stdout).toBe('a.test: no stored DMARC results\n');
  });

  test('stats sums the hourly report periods of a domain per UTC day', async () => {
    const r = await cli(['dmarc', 'stats', 'h.test', '--config', hourlyFile]);
    expect(r.stdout).toBe(
      [dayBefore, day].map((d, i) => `h.test ${d} messages=${i ? 3 : 1} dmarc:pass=${i ? 3 : 1} disposition:none=${i ? 3 : 1} sources: 192.0.2.7=${i ? 3 : 1}\n`).join(''),
    );
    expect((await cli(['dmarc', 'stats', 'h.test', '--since', day, '--config', hourlyFile])).stdout).toMatch(new RegExp(`^h\\.test ${day} messages=3 `));
  });

  test('report --since DAY --dry-run lists the hourly reports of that day, each with its hour as begin and end', async () => {
    const r = await cli(['dmarc', 'report', '--dry-run', '--since', day, '--config', hourlyFile, '--dns', dns.server]);
    expect(r.status).toBe(0);
    const hour = (h: number) => Date.parse(`${day}T0${h}:00:00Z`) / 1000;
    expect(r.stdout).toBe(
      `h.test ${day}T01Z/1h dry-run messages=1 to=agg@h.test mx.receiver.test!h.test!${hour(1)}!${hour(1) + 3599}.xml.gz\n` +
        `h.test ${day}T02Z/1h dry-run messages=2 to=agg@h.test mx.receiver.test!h.test!${hour(2)}!${hour(2) + 3599}.xml.gz\n`,
    );
  });

  test('report exits 1 when a report owed is dropped, not sent (too big for every rua size limit)', async () => {
    const bigFile = path.join(dir, 'big.yaml');
    writeFileSync(bigFile, readFileSync(file, 'utf8').replace('file: state.db', 'file: big.db'));
    const store = openSqliteStore({ file: path.join(dir, 'big.db'), keyPrefix: 'postseal:', busyTimeoutMs: 2000 });
    const base = { receivedAt: yesterday, headerFrom: 'big.test', policyDomain: 'big.test', policy: 'none', result: 'pass', disposition: 'none' } as const;
    for (let i = 0; i < 40; i++) await new StoredDmarcResults(store).record({ ...base, sourceIp: `192.0.2.${i + 1}`, dkim: [] });
    await store.close();
    const r = await cli(['dmarc', 'report', '--config', bigFile, '--dns', dns.server]);
    expect(r.stdout).toMatch(new RegExp(`^big\\.test ${day} too-big messages=40 to=agg@big\\.test`));
    expect(r.status).toBe(1);
  });

  test('usage errors exit 2', async () => {
    expect((await cli(['dmarc', 'stats', '--config', file])).status).toBe(2);
    expect((await cli(['dmarc', 'report', '--out', 'x', '--config', file])).status).toBe(2);
    expect((await cli(['dmarc', 'report', '--since', 'yesterday', '--config', file])).status).toBe(2);
  });
});
