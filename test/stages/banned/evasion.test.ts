/**
 * The tricks a hostile review found that delivered banned content with the default settings:
 * a second file name in one header field, an encoded message/rfc822, a zip with bytes in
 * front, MIME that mail readers read differently, uuencoded files in text, NUL in a name.
 * Each must end in a rejection (or the finding that says why not).
 */
import { decide } from '../../../src/pipeline/verdict';
import { MAX_MIME_PARTS } from '../../../src/lib/mime/structure';
import { bannedStage } from '../../../src/stages/banned';
import { makeZip, peExecutable, uuencode } from '../../helpers/archives';
import { loadTestBank } from '../../helpers/banks';
import { craftedZip } from '../../helpers/crafted-zip';
import { rulesOf, stageFor, testStageDeps, testTransaction } from '../../helpers/stage-run';

const deps = testStageDeps({ server: '127.0.0.1:9' });

async function check(msg: string) {
  const bank = loadTestBank({ stages: ['banned'] });
  const tx = testTransaction(Buffer.from(msg, 'latin1'), { bank });
  const { findings } = await stageFor(bannedStage, bank, deps).run(tx, new AbortController().signal);
  return { verdict: decide(findings, rulesOf(bank)), codes: findings.map((f) => f.code), findings };
}

const hdr = 'From: a@example.com\r\nTo: b@example.org\r\nSubject: t\r\nMIME-Version: 1.0\r\n';
const js = 'var s=new ActiveXObject("WScript.Shell");';
const b64 = (b: Buffer | string) => Buffer.from(b).toString('base64').replace(/.{76}/g, '$&\r\n');
function mp(partHeaders: string, body: string): string {
  return `${hdr}Content-Type: multipart/mixed; boundary="BB"\r\n\r\n--BB\r\nContent-Type: text/plain\r\n\r\nhello\r\n--BB\r\n${partHeaders}\r\n${body}\r\n--BB--\r\n`;
}
const attach = (disposition: string) => mp(`Content-Type: application/octet-stream\r\nContent-Disposition: ${disposition}\r\n`, js);

describe('banned: a second file name in one header field', () => {
  it.each([
    ['an RFC 2231 value after the plain one', `attachment; filename="evil.js"; filename*=utf-8''a.txt`],
    ['a continuation set after the plain one', 'attachment; filename="evil.js"; filename*0="a.t"; filename*1="xt"'],
    ['a repeated plain filename', 'attachment; filename="a.txt"; filename="evil.js"'],
  ])('rejects %s, and says the names disagree', async (_what, disposition) => {
    const r = await check(attach(disposition));
    expect(r.verdict.action).toBe('reject');
    expect(r.codes).toEqual(expect.arrayContaining(['BANNED_FILE', 'BANNED_DISGUISED_NAME']));
    expect(r.findings.find((f) => f.code === 'BANNED_DISGUISED_NAME')?.detail).toContain('different extensions');
  });

  it('passes an ASCII fallback beside an RFC 2231 name with the same extension', async () => {
    const r = await check(attach(`attachment; filename="resume.pdf"; filename*=utf-8''r%C3%A9sum%C3%A9.pdf`));
    expect(r.codes).toEqual([]);
  });

  it('rejects a name with a NUL in it as disguised', async () => {
    const r = await check(attach('attachment; filename="a.txt\0.doc"'));
    expect(r.codes).toContain('BANNED_DISGUISED_NAME');
    expect(r.verdict.action).toBe('reject');
  });
});

describe('banned: a message/rfc822 part that was encoded', () => {
  const inner = `From: x@y\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="II"\r\n\r\n--II\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="evil.js"\r\n\r\nvar a=1;\r\n--II--\r\n`;

  it.each(['base64', 'quoted-printable'])('is decoded and walked (%s), naming the inner part path', async (cte) => {
    const body = cte === 'base64' ? b64(inner) : inner.replace(/=/g, '=3D');
    const r = await check(mp(`Content-Type: message/rfc822\r\nContent-Transfer-Encoding: ${cte}\r\n`, body));
    expect(r.verdict.action).toBe('reject');
    expect(r.findings.find((f) => f.code === 'BANNED_FILE')?.detail).toMatch(/part 2\/1\/1 name "evil\.js"/);
  });
});

describe('banned: encoded messages inside encoded messages', () => {
  it('count toward the MIME depth cap across levels, and stop there', async () => {
    let msg = 'Content-Type: text/plain\r\n\r\nhello\r\n';
    for (let i = 0; i < 150; i++) msg = `Content-Type: message/rfc822\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n${msg}`;
    const r = await check(`${hdr}${msg}`);
    expect(r.findings.find((f) => f.code === 'BANNED_LIMIT_EXCEEDED')?.detail).toMatch(/mime-depth limit/);
    expect(r.verdict.action).toBe('reject');
  });
});

describe('banned: a zip with bytes in front of it', () => {
  const zip = craftedZip(
    [
      { central: 'evil.js', data: js },
      { central: 'readme.txt', data: 'hi' },
    ],
    Buffer.from(`GIF89a${'x'.repeat(100)}`),
  );

  it('is opened when its name says zip', async () => {
    const r = await check(mp('Content-Type: application/zip; name="docs.zip"\r\nContent-Transfer-Encoding: base64\r\n', b64(zip)));
    expect(r.verdict.action).toBe('reject');
    expect(r.findings.find((f) => f.code === 'BANNED_FILE')?.detail).toMatch(/part 2\/1 name "evil\.js"/);
  });

  it('is opened by its end record when nothing says zip (a GIF that unzip opens)', async () => {
    const r = await check(mp('Content-Type: image/gif; name="cat.gif"\r\nContent-Transfer-Encoding: base64\r\n', b64(zip)));
    expect(r.verdict.action).toBe('reject');
    expect(r.findings.find((f) => f.code === 'BANNED_FILE')?.detail).toMatch(/part 2\/1 name "evil\.js"/);
  });

  it('a part named .zip that is no archive is undecipherable and rejected', async () => {
    const r = await check(mp('Content-Type: application/octet-stream; name="docs.zip"\r\nContent-Transfer-Encoding: base64\r\n', b64(Buffer.alloc(5000, 7))));
    expect(r.codes).toContain('BANNED_UNDECIPHERABLE');
    expect(r.verdict.action).toBe('reject');
  });

  it('an ordinary zip still passes', async () => {
    const r = await check(mp('Content-Type: application/zip; name="docs.zip"\r\nContent-Transfer-Encoding: base64\r\n', b64(makeZip({ 'a.txt': 'hello' }))));
    expect(r.verdict.action).not.toBe('reject');
    expect(r.codes).toEqual([]);
  });
});

describe('banned: base64 padding in the middle of a part', () => {
  it('finds a zip glued after padding, and the banned name in it', async () => {
    const body = `QQ==\r\n${b64(makeZip({ 'evil.js': js }))}`;
    const r = await check(mp('Content-Type: text/plain; name="a.txt"\r\nContent-Transfer-Encoding: base64\r\n', body));
    expect(r.verdict.action).toBe('reject');
    expect(r.findings.find((f) => f.code === 'BANNED_FILE')?.detail).toMatch(/part 2\/1 name "evil\.js"/);
  });
});

describe('banned: MIME that mail readers read differently fails closed', () => {
  const evil = `Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="evil.js"\r\n\r\n${js}\r\n`;
  it.each([
    ['a multipart without a boundary', mp('Content-Type: multipart/mixed\r\n', `--II\r\n${evil}--II--`)],
    ['a line in a part header that is no field', mp('Content-Type: application/octet-stream\r\nX-Junk\r\nContent-Disposition: attachment; filename="evil.js"\r\n', js)],
    ['two Content-Type fields in a part', mp('Content-Type: text/plain\r\nContent-Type: multipart/mixed; boundary="CC"\r\n', `--CC\r\n${evil}--CC--`)],
    ['two Content-Type fields at the top', `${hdr}Content-Type: text/plain\r\nContent-Type: multipart/mixed; boundary="BB"\r\n\r\n--BB\r\n${evil}--BB--\r\n`],
    ['two boundary parameters', `${hdr}Content-Type: multipart/mixed; boundary="XX"; boundary="BB"\r\n\r\n--BB\r\n${evil}--BB--\r\n`],
    // clamd reads no boundary there and scans the body as one text part; Thunderbird joins the sections.
    ['a boundary in RFC 2231 sections', `${hdr}Content-Type: multipart/mixed; boundary*0="B"; boundary*1="B"\r\n\r\n--BB\r\n${evil}--BB--\r\n`],
    ['a boundary in RFC 2231 extended form', `${hdr}Content-Type: multipart/mixed; boundary*=us-ascii''B%42\r\n\r\n--BB\r\n${evil}--BB--\r\n`],
  ])('%s is undecipherable and rejected', async (_what, msg) => {
    const r = await check(msg);
    expect(r.codes).toContain('BANNED_UNDECIPHERABLE');
    expect(r.verdict.action).toBe('reject');
  });
});

describe('banned: a part with two Content-Transfer-Encoding fields that differ', () => {
  const program = b64(peExecutable());
  it.each([
    ['in a part', mp('Content-Type: application/octet-stream; name="report.dat"\r\nContent-Transfer-Encoding: 7bit\r\nContent-Transfer-Encoding: base64\r\n', program)],
    ['at the top', `${hdr}Content-Type: application/octet-stream; name="report.dat"\r\nContent-Transfer-Encoding: 7bit\r\nContent-Transfer-Encoding: base64\r\n\r\n${program}\r\n`],
  ])('rejects a base64 program behind "7bit" then "base64" %s (a reader that takes the last one decodes it)', async (_where, msg) => {
    const r = await check(msg);
    expect(r.verdict.action).toBe('reject');
    expect(r.findings.find((f) => f.code === 'BANNED_UNDECIPHERABLE')?.detail).toContain('two different Content-Transfer-Encoding fields');
  });

  it('passes a part that repeats the same encoding in another case and with a blank after it', async () => {
    const r = await check(mp('Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\nContent-Transfer-Encoding: BaSe64 \r\n', b64('hello')));
    expect(r.codes).toEqual([]);
  });

  it('passes "7bit" beside "8bit" (neither decodes anything: a list server that added one)', async () => {
    const r = await check(mp('Content-Type: text/plain\r\nContent-Transfer-Encoding: 7bit\r\nContent-Transfer-Encoding: 8bit\r\n', 'hello'));
    expect(r.codes).toEqual([]);
  });
});

describe('banned: a delimiter line only some readers take for one', () => {
  it.each([
    ['a CR after it', '--BB\r\r\n'],
    ['a form feed after it', '--BB\f\r\n'],
    ['a vertical tab after it', '--BB\v\r\n'],
    ['another case', '--bb\r\n'],
    ['a bare CR before it (Thunderbird ends a line at a bare CR)', 'x\r--BB\r\n'],
    ['a bare CR ending it, the header on the same line', '--BB\r'],
  ])('rejects a program behind a delimiter with %s (Thunderbird or clamd split there, RFC 2046 does not)', async (_what, delimiter) => {
    const msg = mp(
      'Content-Type: text/plain\r\n',
      `hi\r\n${delimiter}Content-Type: application/octet-stream; name="evil.exe"\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA`,
    );
    const r = await check(msg);
    expect(r.verdict.action).toBe('reject');
    expect(r.findings.find((f) => f.code === 'BANNED_UNDECIPHERABLE')?.detail).toMatch(
      /read differently by mail readers: (a line that some readers take for a boundary|a bare CR before a boundary)/,
    );
  });

  it('passes a body line that merely starts like a delimiter', async () => {
    const r = await check(mp('Content-Type: text/plain\r\n', 'hi\r\n--BBC news\r\n-- \r\nsignature'));
    expect(r.codes).toEqual([]);
  });
});

describe('banned: uuencoded files in text', () => {
  it('checks the name on a "begin" line', async () => {
    const r = await check(mp('Content-Type: text/plain\r\n', 'see attached\r\n\r\nbegin 644 evil.js\r\n(=F%R(&$],3L*\r\n`\r\nend'));
    expect(r.verdict.action).toBe('reject');
    expect(r.findings.find((f) => f.code === 'BANNED_FILE')?.detail).toMatch(/part 2\/1 name "evil\.js"/);
  });

  it('decodes a uuencoded file: a program named photo.jpg is banned by its bytes', async () => {
    const text = `see the photo\r\n\r\n${uuencode('photo.jpg', peExecutable()).replace(/\n/g, '\r\n')}`;
    const r = await check(mp('Content-Type: text/plain\r\n', text));
    expect(r.codes).toEqual(['BANNED_FILE']);
    expect(r.findings[0].detail).toMatch(/^\[\.exe-ms\] part 2\/1 name "photo\.jpg"/);
  });

  it('walks into a uuencoded zip (uuencode -m) and bans the program in it', async () => {
    const zip = makeZip({ 'readme.txt': 'hi', 'invoice.pdf.exe': 'x' });
    const r = await check(mp('Content-Type: text/plain\r\n', `files:\r\n${uuencode('docs.zip', zip, true).replace(/\n/g, '\r\n')}`));
    expect(r.codes).toEqual(['BANNED_FILE']);
    expect(r.findings[0].detail).toMatch(/part 2\/1\/2 name "invoice\.pdf\.exe"/);
  });

  it.each([
    ['starts like HTML', '<html><body>hi</body></html>\r\n'],
    ['has a control character early', 'hi\x01\r\n'],
    ['mentions %PDF- in its first lines', 'the file starts with %PDF-1.4, see\r\n'],
    ['starts like BinHex', '(This file must be converted with BinHex 4.0)\r\n\r\nno, it need not\r\n'],
  ])('checks the uuencoded files of a message without MIME (Thunderbird shows them) whose text %s', async (_what, lead) => {
    const msg = `From: a@example.com\r\nTo: b@example.org\r\nSubject: t\r\n\r\n${lead}\r\nbegin 644 evil.js\r\n(=F%R(&$],3L*\r\n\`\r\nend\r\n`;
    const r = await check(msg);
    expect(r.verdict.action).toBe('reject');
    expect(r.findings.find((f) => f.code === 'BANNED_FILE')?.detail).toMatch(/evil\.js/);
  });

  it('checks yEnc files in a message without MIME (Thunderbird decodes them): a name, and a program by its bytes', async () => {
    const yenc = (name: string, data: Buffer) =>
      `=ybegin line=128 size=${data.length} name=${name}\r\n${[...data]
        .map((b) => (b + 42) & 0xff)
        .map((c) => ([0, 10, 13, 61].includes(c) ? `=${String.fromCharCode(c + 64)}` : String.fromCharCode(c)))
        .join('')}\r\n=yend size=${data.length}\r\n`;
    const msg = (name: string, data: Buffer) => `From: a@example.com\r\nTo: b@example.org\r\nSubject: t\r\n\r\nhere:\r\n${yenc(name, data)}`;
    const named = await check(msg('evil.js', Buffer.from(js)));
    expect(named.findings.find((f) => f.code === 'BANNED_FILE')?.detail).toMatch(/part 1\/1 name "evil\.js"/);
    const typed = await check(msg('photo.jpg', peExecutable().subarray(0, 100)));
    expect(typed.findings.find((f) => f.code === 'BANNED_FILE')?.detail).toMatch(/^\[\.exe-ms\] part 1\/1 name "photo\.jpg"/);
  });

  it('checks a uuencoded file in text whose lines end in a bare CR (Thunderbird ends a line at CR too)', async () => {
    const text = `see attached\rbegin 644 evil.js\r(=F%R(&$],3L*\r\`\rend\r`;
    const r = await check(mp('Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n', b64(text)));
    expect(r.verdict.action).toBe('reject');
    expect(r.findings.find((f) => f.code === 'BANNED_FILE')?.detail).toMatch(/part 2\/1 name "evil\.js"/);
  });

  it('does not pass a program after 100 harmless uuencoded files silently: the part is a members limit (unchecked alert)', async () => {
    const one = uuencode('a.txt', 'x\n').replace(/\n/g, '\r\n');
    const text = `${Array.from({ length: 100 }, (_, i) => one.replace('a.txt', `f${i}.txt`)).join('')}${uuencode('late.jpg', peExecutable()).replace(/\n/g, '\r\n')}`;
    const r = await check(mp('Content-Type: text/plain\r\n', text));
    expect(r.codes).toEqual(['BANNED_LIMIT_EXCEEDED', 'BANNED_UNCHECKED']);
    expect(r.verdict.action).toBe('tag');
  });

  it('names the uuencoded files and the members of a zip at the end of the same text part by paths of their own', async () => {
    const zip = makeZip({ 'readme.txt': 'hi', 'invoice.pdf.exe': 'x' });
    // Text that ends like a zip is read again whole and opened (unzip would open it), after its uuencoded file was read.
    const text = Buffer.concat([Buffer.from(`see\r\n${uuencode('evil.js', js).replace(/\n/g, '\r\n')}\r\n`), zip]);
    const r = await check(mp('Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n', b64(text)));
    const details = r.findings.filter((f) => f.code === 'BANNED_FILE' || f.code === 'BANNED_FILE_MORE').map((f) => f.detail);
    expect(details).toEqual(expect.arrayContaining([expect.stringMatching(/part 2\/1 name "evil\.js"/), expect.stringMatching(/part 2\/3 name "invoice\.pdf\.exe"/)]));
    expect(details.some((d) => /part 2\/1 name "invoice/.test(d ?? ''))).toBe(false);
  });

  it('passes text with a uuencoded document', async () => {
    const r = await check(mp('Content-Type: text/plain\r\n', `notes:\r\n${uuencode('notes.txt', 'meeting at noon\n').replace(/\n/g, '\r\n')}`));
    expect(r.codes).toEqual([]);
  });
});

describe('banned: more MIME parts than a walk makes', () => {
  it('bans a message of more than MAX_MIME_PARTS parts (the last ones unread) as undecipherable', async () => {
    const parts = 'Content-Type: text/plain\r\n\r\nx\r\n--BB\r\n'.repeat(MAX_MIME_PARTS + 5);
    const msg = `From: a@example.org\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="BB"\r\n\r\n--BB\r\n${parts}Content-Type: application/octet-stream; name="evil.exe"\r\n\r\nMZ\r\n--BB--\r\n`;
    const r = await check(msg);
    expect(r.codes).toContain('BANNED_UNDECIPHERABLE');
    expect(r.findings.find((f) => f.code === 'BANNED_UNDECIPHERABLE')?.detail).toMatch(/more than 20000 MIME parts/);
    expect(r.verdict.action).toBe('reject');
  });
});
