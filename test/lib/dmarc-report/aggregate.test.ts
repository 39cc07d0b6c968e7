import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { buildAggregateReport, buildAggregateReportAsync, type DmarcResultRecord } from '../../../src/lib/dmarc-report/aggregate';
import { parseDmarcRecord, type PublishedPolicy } from '../../../src/lib/dmarc-report/policy';

const XSD = path.join(__dirname, '../../fixtures/dmarc-report/rfc7489-aggregate.xsd');
const policy = parseDmarcRecord('example.org', 'v=DMARC1; p=quarantine; sp=reject; adkim=s; pct=50; fo=1; rua=mailto:dmarc@example.org!10m') as PublishedPolicy;
const meta = { orgName: 'Example Receiver', email: 'dmarc-reports@receiver.test', reportId: 'example.org-20261206' };
const begin = Date.UTC(2026, 11, 6) / 1000;
const end = begin + 86399;

function rec(over: Partial<DmarcResultRecord>): DmarcResultRecord {
  return {
    sourceIp: '192.0.2.10',
    headerFrom: 'example.org',
    disposition: 'none',
    dkim: [{ domain: 'example.org', selector: 's1', result: 'pass' }],
    spf: { domain: 'example.org', result: 'pass' },
    ...over,
  };
}

const records: DmarcResultRecord[] = [
  rec({}),
  rec({}),
  rec({}),
  rec({ sourceIp: '2001:db8::25', dkim: [], spf: { domain: 'bounce.example.org', result: 'pass' } }),
  rec({ sourceIp: '198.51.100.7', disposition: 'quarantine', dkim: [{ domain: 'evil.test', selector: 'x', result: 'fail' }], spf: { domain: 'evil.test', result: 'softfail' } }),
  rec({ sourceIp: '198.51.100.7', disposition: 'quarantine', dkim: [{ domain: 'evil.test', selector: 'x', result: 'fail' }], spf: { domain: 'evil.test', result: 'softfail' } }),
  rec({ sourceIp: undefined, headerFrom: 'mail.example.org', dkim: [{ domain: 'a<b>&"c', selector: "'", result: 'weird' }], spf: undefined }),
];

function xmllint(xml: string): { status: number | null; stderr: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'dmarc-xsd-'));
  const file = path.join(dir, 'report.xml');
  writeFileSync(file, xml);
  const r = spawnSync('xmllint', ['--noout', '--schema', XSD, file], { encoding: 'utf8' });
  if (r.error) throw new Error(`xmllint is needed (Debian libxml2-utils): ${r.error.message}`);
  return { status: r.status, stderr: r.stderr };
}

/** An independent reading of the report: python3's xml.etree, summed per row. */
const PY_READER = `
import sys, json, xml.etree.ElementTree as ET
ns = {'d': 'http://dmarc.org/dmarc-xml/0.1'}
root = ET.fromstring(sys.stdin.buffer.read())
rows = []
for r in root.findall('d:record', ns):
    rows.append({
        'ip': r.findtext('d:row/d:source_ip', namespaces=ns),
        'count': int(r.findtext('d:row/d:count', namespaces=ns)),
        'disposition': r.findtext('d:row/d:policy_evaluated/d:disposition', namespaces=ns),
        'dkim': r.findtext('d:row/d:policy_evaluated/d:dkim', namespaces=ns),
        'spf': r.findtext('d:row/d:policy_evaluated/d:spf', namespaces=ns),
        'header_from': r.findtext('d:identifiers/d:header_from', namespaces=ns),
        'dkim_domains': [d.findtext('d:domain', namespaces=ns) for d in r.findall('d:auth_results/d:dkim', ns)],
    })
print(json.dumps({'org': root.findtext('d:report_metadata/d:org_name', namespaces=ns),
  'begin': int(root.findtext('d:report_metadata/d:date_range/d:begin', namespaces=ns)),
  'p': root.findtext('d:policy_published/d:p', namespaces=ns), 'pct': root.findtext('d:policy_published/d:pct', namespaces=ns), 'rows': rows}))
`;

function pythonRead(xml: Buffer): {
  org: string;
  begin: number;
  p: string;
  pct: string;
  rows: { ip: string; count: number; disposition: string; dkim: string; spf: string; header_from: string; dkim_domains: string[] }[];
} {
  return JSON.parse(execFileSync('python3', ['-c', PY_READER], { input: xml, encoding: 'utf8' }));
}

describe('aggregate report', () => {
  const report = buildAggregateReport('receiver.test', { meta, policy, begin, end, records });

  test('the XML validates against the RFC 7489 appendix C schema', () => {
    const r = xmllint(report.xml);
    expect(r.stderr).toContain('validates');
    expect(r.status).toBe(0);
  });

  test('the schema check can fail: a report with a made-up disposition does not validate', () => {
    const r = xmllint(report.xml.replace('<disposition>quarantine</disposition>', '<disposition>discard</disposition>'));
    // The error text, not only the status: a missing xmllint would also end non-zero.
    expect(r.stderr).toMatch(/disposition.*not an element of the set|fails to validate/);
    expect(r.status).toBe(3);
  });

  test('the gzip attachment unpacks to the XML and is named receiver!domain!begin!end.xml.gz', () => {
    expect(gunzipSync(report.gzip).toString('utf8')).toBe(report.xml);
    expect(report.fileName).toBe(`receiver.test!example.org!${begin}!${end}.xml.gz`);
  });

  test('an independent parser reads rows whose counts add up to the records', () => {
    const read = pythonRead(gunzipSync(report.gzip));
    expect(read.org).toBe('Example Receiver');
    expect(read.begin).toBe(begin);
    expect(read).toMatchObject({ p: 'quarantine', pct: '50' });
    expect(read.rows.reduce((n, r) => n + r.count, 0)).toBe(records.length);
    expect(read.rows).toHaveLength(4);
    expect(read.rows.find((r) => r.ip === '192.0.2.10' && r.header_from === 'example.org')).toMatchObject({ count: 3, dkim: 'pass', spf: 'pass', disposition: 'none' });
    expect(read.rows.find((r) => r.ip === '198.51.100.7')).toMatchObject({ count: 2, dkim: 'fail', spf: 'fail', disposition: 'quarantine' });
  });

  test('strict DKIM alignment (adkim=s) and relaxed SPF alignment are judged from the stored domains', () => {
    const read = pythonRead(Buffer.from(report.xml));
    // SPF for bounce.example.org aligns relaxed (aspf defaults to r); no DKIM signature.
    expect(read.rows.find((r) => r.ip === '2001:db8::25')).toMatchObject({ count: 1, dkim: 'fail', spf: 'pass' });
  });

  test('hostile strings are escaped, a missing source address and SPF result still give a valid row', () => {
    const read = pythonRead(Buffer.from(report.xml));
    const row = read.rows.find((r) => r.header_from === 'mail.example.org');
    expect(row).toMatchObject({ ip: '0.0.0.0', count: 1, dkim_domains: ['a<b>&"c'] });
  });
});

describe('DMARC record tags for policy_published', () => {
  test('rua size limits, defaults, and ri= kept as requested (the report period is decided when results are stored)', () => {
    const p = parseDmarcRecord('Example.ORG', 'v=DMARC1; p=reject; ri=60; rua=mailto:a@example.org!10m,mailto:b%40x@rep.test,https://x.test/');
    expect(p).toMatchObject({ domain: 'example.org', p: 'reject', sp: 'reject', adkim: 'r', aspf: 'r', pct: 100, fo: '0', intervalSec: 60 });
    expect(p?.rua).toEqual([{ address: 'a@example.org', domain: 'example.org', maxBytes: 10 * 1024 * 1024 }]); // mailto:b%40x@rep.test is refused: its local part is not a dot-atom
  });

  test('rua addresses: duplicates dropped, at most five kept, and only dot-atom@host-name', () => {
    const many = Array.from({ length: 2000 }, (_, i) => `mailto:r${i}@example.org`).join(',');
    expect(parseDmarcRecord('example.org', `v=DMARC1; p=none; rua=mailto:r0@example.org,mailto:R0@example.org,${many}`)?.rua.map((u) => u.address)).toEqual([
      'r0@example.org',
      'r1@example.org',
      'r2@example.org',
      'r3@example.org',
      'r4@example.org',
    ]);
    for (const bad of ['a%25b@x.test', 'a!b@x.test', '%22a%20b%22@x.test', 'a,b@x.test', 'a@x_y.test', 'a@[192.0.2.1]', 'a@localhost', 'a@-x.test', '.a@x.test']) {
      expect(parseDmarcRecord('example.org', `v=DMARC1; p=none; rua=mailto:${bad}`)?.rua).toEqual([]);
    }
  });

  test('a record that does not start with v=DMARC1 or has no valid p= is not a policy', () => {
    expect(parseDmarcRecord('example.org', 'p=reject; v=DMARC1')).toBeNull();
    expect(parseDmarcRecord('example.org', 'v=DMARC1; p=maybe')).toBeNull();
  });
});

describe('aggregate report cost and limits', () => {
  test('a 100,000-record period is built without holding the event loop for long, and at most maxRows rows', async () => {
    const many: DmarcResultRecord[] = Array.from({ length: 100000 }, (_, i) =>
      rec({
        sourceIp: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
        disposition: 'reject',
        dkim: [{ domain: `d${i}.attacker.test`, selector: `s${i}`, result: 'fail' }],
        spf: { domain: `b${i}.attacker.test`, result: 'softfail' },
      }),
    );
    // Turns of the event loop while the report is built (a ticker in each check phase): the
    // build yields every 1,000 records, so other connections are served between them; the
    // synchronous build gave none (a count, not a time: the machine's load does not change it).
    let turns = 0;
    let ticking = true;
    const tick = () => {
      turns++;
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    const built = await buildAggregateReportAsync('receiver.test', { meta, policy, begin, end, records: many, maxRows: 1000 }, (d) => `id.${d.slice(0, 16)}`);
    ticking = false;
    expect(turns).toBeGreaterThanOrEqual(99);
    expect([...built.xml.matchAll(/<record>/g)]).toHaveLength(1000);
    expect(built.xml).toContain('<error>99000 rows with 99000 messages left out: a report carries at most 1000 rows (the largest counts)</error>');
    expect(xmllint(built.xml).status).toBe(0);
    expect(gunzipSync(built.gzip).toString('utf8')).toBe(built.xml);
  });

  test('alignment stored by the dmarc stage wins over the stored domains; the null sender is reported with scope helo', () => {
    const r = buildAggregateReport('receiver.test', {
      meta,
      policy,
      begin,
      end,
      records: [
        rec({ headerFrom: 'sub.example.org', dkim: [{ domain: 'example.org', selector: 's', result: 'pass' }], dkimAligned: true, spfAligned: false }),
        rec({ sourceIp: '192.0.2.99', dkimAligned: false, spfAligned: false, spf: { domain: 'mx.example.org', result: 'pass', scope: 'helo' } }),
        rec({ sourceIp: '192.0.2.98', dkimAligned: false, spfAligned: false, disposition: 'none', override: 'local_policy' }),
      ],
    });
    expect(r.xml).toContain('<spf>fail</spf><reason><type>local_policy</type></reason></policy_evaluated>');
    expect(xmllint(r.xml).status).toBe(0);
    const read = pythonRead(Buffer.from(r.xml));
    expect(read.rows.find((x) => x.header_from === 'sub.example.org')).toMatchObject({ dkim: 'pass', spf: 'fail' });
    expect(read.rows.find((x) => x.ip === '192.0.2.99')).toMatchObject({ dkim: 'fail', spf: 'fail' });
    expect(r.xml).toContain('<envelope_from></envelope_from>');
    expect(r.xml).toContain('<scope>helo</scope>');
  });
});

test('a record with rua= but no valid p= is read as p=none (RFC 7489 6.6.3), without either it is no record', () => {
  expect(parseDmarcRecord('x.test', 'v=DMARC1; rua=mailto:a@x.test')).toMatchObject({ p: 'none', sp: 'none', rua: [{ address: 'a@x.test' }] });
  expect(parseDmarcRecord('x.test', 'v=DMARC1; p=bogus; rua=mailto:a@x.test')).toMatchObject({ p: 'none' });
  expect(parseDmarcRecord('x.test', 'v=DMARC1; adkim=s')).toBeNull();
});
