/**
 * The notice templates: the shipped English ones load and use only known placeholders; a site
 * folder's file wins over the shipped one, per category before per audience; a typo refuses
 * the configuration with CFG_TEMPLATE_INVALID naming the file; values from the message are
 * one printable line each; a UTF-8 site template makes a quoted-printable notice with an
 * encoded Subject that Python's email package reads back.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { isPostsealError } from '../../src/errors';
import { addressList, loadTemplates, PLACEHOLDERS, render, SHIPPED_TEMPLATE_DIR, type TemplateValues } from '../../src/lib/notice-templates';
import { buildNotice } from '../../src/notify/notice';

const values = Object.fromEntries(PLACEHOLDERS.map((p) => [p, `<${p}>`])) as unknown as TemplateValues;

function siteDir(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'postseal-templates-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  return dir;
}

function loadError(dir: string): unknown {
  try {
    loadTemplates(dir);
  } catch (err) {
    return err;
  }
  return undefined;
}

it('loads the shipped templates for every audience and category, each with a Subject', () => {
  const t = loadTemplates('');
  expect(t.size).toBe(12);
  expect(t.get('admin:virus')?.file).toBe(path.join(SHIPPED_TEMPLATE_DIR, 'admin.txt'));
  expect(render(t.get('sender:banned')!, values).subject).toBe('Your message was not delivered (<category>)');
});

it("takes a site folder's per-category file first, then its per-audience file, then the shipped one", () => {
  const dir = siteDir({ 'admin-spam.txt': `Subject: spam \${id}\n\nspam body\n`, 'admin.txt': `Subject: site \${id}\n\nsite body\n` });
  const t = loadTemplates(dir);
  expect(t.get('admin:spam')?.file).toBe(path.join(dir, 'admin-spam.txt'));
  expect(t.get('admin:virus')?.file).toBe(path.join(dir, 'admin.txt'));
  expect(t.get('sender:virus')?.file).toBe(path.join(SHIPPED_TEMPLATE_DIR, 'sender.txt'));
});

it('refuses an unknown placeholder, naming the file and the placeholder', () => {
  const dir = siteDir({ 'recipient.txt': `Subject: hello\n\nyour \${subjcet}\n` });
  const err = loadError(dir);
  expect(isPostsealError(err, 'CFG_TEMPLATE_INVALID')).toBe(true);
  expect((err as Error).message).toContain(`${path.join(dir, 'recipient.txt')}: unknown placeholder \${subjcet}`);
});

it('refuses a template without its Subject line and empty line, and a folder that does not exist', () => {
  expect(isPostsealError(loadError(siteDir({ 'admin.txt': `Hello \${id}\n` })), 'CFG_TEMPLATE_INVALID')).toBe(true);
  expect(isPostsealError(loadError(siteDir({ 'admin.txt': 'Subject: x\nbody right away\n' })), 'CFG_TEMPLATE_INVALID')).toBe(true);
  expect(isPostsealError(loadError('/nonexistent/postseal-templates'), 'CFG_TEMPLATE_INVALID')).toBe(true);
});

it('puts each value on one printable line, so a crafted value adds no header field or line', () => {
  const t = loadTemplates(siteDir({ 'admin.txt': `Subject: about \${subject}\n\n\${from}\n` })).get('admin:virus')!;
  const out = render(t, { ...values, subject: 'hi\r\nBcc: victim@example.org', from: 'a\u00e9\u0000b\nc' });
  expect(out.subject).toBe('about hi Bcc: victim@example.org');
  expect(out.body).toBe('a??b c\n');
  expect(render(t, { ...values, from: 'x'.repeat(1000) }).body.length).toBeLessThan(320);
  expect(addressList(Array.from({ length: 500 }, (_, i) => `user${i}@example.org`))).toMatch(/, and \d+ more$/);
});

it('writes a UTF-8 site template as a quoted-printable notice with an encoded Subject, which Python reads back', () => {
  const t = loadTemplates(siteDir({ 'admin.txt': `Subject: Virus gefunden: \${id} \u00fcber Gr\u00f6\u00dfe\n\nGr\u00fc\u00dfe, \${hostname}\n` })).get('admin:virus')!;
  const text = render(t, { ...values, id: 'S1', hostname: 'mx.example.org' });
  const { raw } = buildNotice({
    from: 'postmaster@example.org',
    to: ['admin@example.org'],
    ...text,
    audience: 'admin',
    category: 'virus',
    hostname: 'mx.example.org',
    now: new Date(0),
  });
  expect(raw.every((b) => b < 0x80)).toBe(true);
  const parsed = execFileSync(
    '/usr/bin/python3',
    ['-c', 'import sys,email,email.policy\nm=email.message_from_bytes(sys.stdin.buffer.read(),policy=email.policy.default)\nprint(m["subject"]);print(m.get_content(),end="")'],
    { input: raw },
  ).toString('utf8');
  // The body's CRLF line ends come back as they were sent.
  expect(parsed.replace(/\r\n/g, '\n')).toBe('Virus gefunden: S1 \u00fcber Gr\u00f6\u00dfe\nGr\u00fc\u00dfe, mx.example.org\n');
});
