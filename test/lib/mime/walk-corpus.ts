/**
 * Bodies for the MIME walker's differential test: written cases for each edge the walker
 * must get right (boundaries, line endings, 997/998/999-octet lines, NUL, 8-bit, message/rfc822,
 * bodies and headers cut short) and seeded random MIME trees that mix them. walk-snapshot.json
 * holds what the line-by-line walker (commit 768a1d4, before plain body lines came in runs)
 * made of each, whole (it made the same in chunks of 1, 2, 3, 7 and 1000 bytes): the reference
 * the walker must still match, offset for offset. Regenerating it from the code under test
 * would test nothing; a change to this corpus needs the snapshot made by that walker again.
 */
import type { Part } from '../../../src/lib/mime/structure';

export interface WalkCase {
  readonly name: string;
  readonly contentType?: string;
  readonly transferEncoding?: string;
  readonly body: Buffer;
}

/** Every field of a part but its links, one row per part in document order, led by its depth. */
export function describeParts(root: Part): unknown[][] {
  const rows: unknown[][] = [];
  const visit = (p: Part, depth: number) => {
    const te = p.transferEncodingField;
    rows.push([
      depth,
      p.contentType,
      p.boundary,
      p.transferEncoding,
      te && [te.start, te.end],
      p.headerEnd,
      p.eightBitHeader,
      p.bodyStart,
      p.bodyEnd,
      p.eightBit,
      p.nul,
      p.longLine,
      p.children.length,
    ]);
    for (const c of p.children) visit(c, depth + 1);
  };
  visit(root, 0);
  return rows;
}

const x = (n: number) => 'x'.repeat(n);
const MIXED = 'multipart/mixed; boundary=b';

/** Long-line cases: `n` octets of content, then the line ending (or none, as the last line). */
function longLineCases(): WalkCase[] {
  const cases: WalkCase[] = [];
  for (const n of [997, 998, 999]) {
    for (const [eolName, eol] of [
      ['crlf', '\r\n'],
      ['lf', '\n'],
      ['cr-crlf', '\r\r\n'],
      ['none', ''],
    ]) {
      cases.push({ name: `line of ${n} octets, ${eolName}`, body: Buffer.from(`first\r\n${x(n)}${eol}`, 'latin1') });
      cases.push({
        name: `line of ${n} octets, ${eolName}, in the second part`,
        contentType: MIXED,
        body: Buffer.from(`--b\r\n\r\nshort\r\n--b\r\n\r\n${x(n)}${eol}${eol ? '--b--\r\n' : ''}`, 'latin1'),
      });
    }
    cases.push({ name: `line of ${n} octets starting with --`, contentType: MIXED, body: Buffer.from(`--b\r\n\r\n--${x(n - 2)}\r\n--b--\r\n`, 'latin1') });
  }
  cases.push({ name: 'line of 999 octets ending in a CR, last', body: Buffer.from(`${x(998)}\r`, 'latin1') });
  cases.push({ name: 'long line in the preamble', contentType: MIXED, body: Buffer.from(`${x(1500)}\r\n--b\r\n\r\nbody\r\n--b--\r\n`, 'latin1') });
  return cases;
}

const WRITTEN: [string, string | undefined, string | undefined, string][] = [
  ['no MIME, empty body', undefined, undefined, ''],
  ['no MIME, one line without an ending', undefined, undefined, 'hello'],
  ['no MIME, 8-bit and NUL', undefined, '8bit', 'Gr\xfc\xdfe\r\na\0b\r\n'],
  ['body of only dashes', undefined, undefined, '--'],
  ['body of one dash', MIXED, undefined, '-'],
  [
    'multipart/alternative with an 8-bit part',
    'multipart/alternative; boundary=b',
    undefined,
    'preamble\r\n--b\r\nContent-Type: text/plain\r\n\r\nascii\r\n--b\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: 8bit\r\n\r\n<p>\xe4</p>\r\n--b--\r\nepilogue\r\n',
  ],
  [
    'nested multiparts with 8-bit, NUL and an 8-bit epilogue',
    'multipart/mixed; boundary="outer"',
    '8bit',
    'pre\r\n--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n--inner\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xc3\xa4\r\n--inner\r\nContent-Type: text/html\r\n\r\nn\0l\r\n--inner--\r\ninner epilogue \xff\r\n--outer\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\nBBBB\r\n--outer--\r\nouter epilogue \xe9\r\n',
  ],
  [
    'message/rfc822 part walked into',
    MIXED,
    undefined,
    '--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: multipart/alternative; boundary=c\r\n\r\n--c\r\n\r\n\xe4\r\n--c--\r\n--b\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nU3ViamVjdDogeA0K\r\n--b--\r\n',
  ],
  ['top-level message/rfc822 with a multipart inside', 'message/rfc822', '8bit', 'Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n\xe4\r\n--b--\r\n'],
  [
    'multipart/digest parts default to message/rfc822',
    'multipart/digest; boundary=d',
    undefined,
    '--d\r\n\r\nSubject: one\r\n\r\nbody one\r\n--d\r\nContent-Type: text/plain\r\n\r\ntwo\r\n--d--\r\n',
  ],
  ['bare LF throughout', MIXED, undefined, 'pre\n--b\nContent-Type: text/plain\nContent-Transfer-Encoding: 8bit\n\n\xe4\n--b\n\nsecond\n--b--\nepi\n'],
  ['CRLF and bare LF mixed, CR inside lines', MIXED, undefined, 'pre\r\n--b\n\r\na\rb\r\r\nc\n--b\r\n\nd\r\n--b--\n'],
  [
    'lines that look like the boundary but are not',
    MIXED,
    undefined,
    '--b\r\n\r\n--bb\r\n--b-x\r\n--b--x\r\n-- b\r\n---b\r\n --b\r\n--B\r\n--\r\n-\r\n--b \t\r\nafter padded boundary\r\n--b--  \r\n',
  ],
  [
    'boundaries that prefix each other',
    'multipart/mixed; boundary=b',
    undefined,
    '--b\r\nContent-Type: multipart/mixed; boundary=bb\r\n\r\n--bb\r\n\r\nin bb\r\n--b\r\n\r\nends both\r\n--bb--\r\n--b--\r\n',
  ],
  ['missing closing boundary', MIXED, undefined, '--b\r\n\r\none\r\n--b\r\n\r\ntwo \xe4\r\n'],
  ['missing closing boundary, no last line ending', MIXED, undefined, '--b\r\n\r\none\r\n--b\r\n\r\ntwo'],
  ['part header that never ends', MIXED, undefined, '--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n'],
  [
    'outer boundary inside an unterminated inner multipart',
    'multipart/mixed; boundary=o',
    undefined,
    '--o\r\nContent-Type: multipart/mixed; boundary=i\r\n\r\n--i\r\n\r\ninner\r\n--o\r\n\r\nsecond\r\n--o--\r\n',
  ],
  [
    'part header: continuation, 8-bit, a line that is not a field',
    MIXED,
    undefined,
    '--b\r\nContent-Type: text/plain;\r\n charset=utf-8\r\nX-Name: J\xfcrgen\r\n\r\nbody\r\n--b\r\nnot a field\r\nmore\r\n--b--\r\n',
  ],
  ['boundary line longer than the kept head', MIXED, undefined, `--b\r\n\r\none\r\n--b${' '.repeat(1200)}x\r\ntwo\r\n--b--\r\n`],
  ['closing boundary with nothing after it', MIXED, undefined, '--b\r\n\r\none\r\n--b--'],
  ['empty parts back to back', MIXED, undefined, '--b\r\n--b\r\n\r\n--b\r\n\r\n\r\n--b--\r\n'],
];

/** A small deterministic generator (mulberry32), so the corpus is the same on every run. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random MIME body: nested multiparts, message/rfc822, lines of any length near 998, stray boundaries, cut short at times. */
function randomBody(seed: number): WalkCase {
  const rand = seeded(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  const eols = pick([['\r\n'], ['\n'], ['\r\n', '\n'], ['\r\n', '\r\n', '\r\n', '\n', '\r\r\n']]);
  const out: string[] = [];
  const line = (s: string) => out.push(s + pick(eols));
  const bodyLine = (open: string[]) => {
    const r = rand();
    if (r < 0.08 && open.length) return line(`--${pick(open)}${pick(['', 'x', '-', '--x', ' ', '\t  ', '--'])}`);
    if (r < 0.12) return line(pick(['--', '-', '---', '-- ', '']));
    const length = rand() < 0.06 ? 990 + Math.floor(rand() * 20) : Math.floor(rand() * 90);
    const odd = rand();
    const chars = Array.from({ length }, () => String.fromCharCode(0x20 + Math.floor(rand() * 95)));
    const at = Math.floor(rand() * length);
    if (odd < 0.05) chars[at] = '\0';
    else if (odd < 0.15) chars[at] = String.fromCharCode(0x80 + Math.floor(rand() * 128));
    line(chars.join(''));
  };
  const entity = (depth: number, open: string[]) => {
    const kind = depth > 2 ? 'leaf' : pick(['leaf', 'leaf', 'multipart', 'rfc822']);
    if (kind === 'multipart') {
      const boundary = pick(['b', 'bb', 'b1', '=_x', 'c']) + depth;
      line(`Content-Type: multipart/${pick(['mixed', 'alternative', 'digest'])}; boundary="${boundary}"`);
      line('');
      for (let i = rand() * 3; i > 0; i--) bodyLine(open);
      for (let n = 1 + Math.floor(rand() * 3); n > 0; n--) {
        line(`--${boundary}`);
        entity(depth + 1, [...open, boundary]);
      }
      if (rand() < 0.8) line(`--${boundary}--`);
      for (let i = rand() * 2; i > 0; i--) bodyLine(open);
      return;
    }
    if (kind === 'rfc822') {
      line('Content-Type: message/rfc822');
      if (rand() < 0.3) line(`Content-Transfer-Encoding: ${pick(['8bit', 'base64'])}`);
      line('');
      entity(depth + 1, open);
      return;
    }
    if (rand() < 0.8) line(`Content-Type: ${pick(['text/plain; charset=utf-8', 'application/octet-stream', 'text/html'])}`);
    if (rand() < 0.6) line(`Content-Transfer-Encoding: ${pick(['7bit', '8bit', 'binary', 'base64', 'quoted-printable'])}`);
    if (rand() < 0.1) line(`X-Note: caf\xe9`);
    if (rand() < 0.1) line('  folded on');
    line('');
    for (let n = Math.floor(rand() * 12); n > 0; n--) bodyLine(open);
  };
  const boundary = pick(['b', 'bb', 'top']);
  const lines = 1 + Math.floor(rand() * 3);
  for (let i = 0; i < lines; i++) bodyLine([]);
  for (let n = 1 + Math.floor(rand() * 3); n > 0; n--) {
    line(`--${boundary}`);
    entity(1, [boundary]);
  }
  if (rand() < 0.7) line(`--${boundary}--`);
  let body = Buffer.from(out.join(''), 'latin1');
  if (rand() < 0.25) body = body.subarray(0, Math.floor(rand() * body.length));
  return { name: `random ${seed}`, contentType: `multipart/mixed; boundary=${boundary}`, body };
}

/** Like the benchmark's mail: an 8-bit UTF-8 text part and a base64 attachment. */
function benchLike(): WalkCase {
  const rand = seeded(20);
  const text = Array.from({ length: 30 }, (_, i) => `Grüße aus Zürich, Zeile ${i}: die Übersicht liegt bei.`);
  const data = Buffer.from(Array.from({ length: 5700 }, () => Math.floor(rand() * 256)));
  const b64 = data.toString('base64').match(/.{1,76}/g) ?? [];
  const body = [
    '--=_bench',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 8bit',
    '',
    ...text,
    '--=_bench',
    'Content-Type: application/octet-stream',
    'Content-Transfer-Encoding: base64',
    '',
    ...b64,
    '--=_bench--',
    '',
  ].join('\r\n');
  return { name: 'like the benchmark message', contentType: 'multipart/mixed; boundary="=_bench"', body: Buffer.from(body) };
}

export function walkCorpus(): WalkCase[] {
  const written = WRITTEN.map(([name, contentType, transferEncoding, body]) => ({ name, contentType, transferEncoding, body: Buffer.from(body, 'latin1') }));
  const random = Array.from({ length: 60 }, (_, i) => randomBody(i + 1));
  return [...written, ...longLineCases(), benchLike(), ...random];
}
